"""Create-body checks in Kling's words: 400/1201 with a message naming the field.

The three typed endpoints go through klingmon's own request models (so the simulator
and the client agree on the documented limits); other endpoints get the checks that
apply to every legacy body. Unknown top-level fields are ignored, as Kling does.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from klingmon.api import (
    ENDPOINTS,
    Image2VideoRequest,
    Text2VideoRequest,
    VideoExtendRequest,
    build_request,
)
from klingmon.errors import RequestValidationError
from klingmon.sim._tasks import KNOWN_MODELS

__all__ = ["MESSAGES", "STATUS_FOR_CODE", "validate_create"]

#: Default message per Kling code (reference §8.1; 1303 verbatim from the docs).
MESSAGES: dict[int, str] = {
    1000: "Authentication failed",
    1001: "Authorization is empty",
    1002: "Authorization is invalid",
    1003: "Authorization is not yet valid",
    1004: "Authorization has expired",
    1100: "Account exception",
    1101: "Account in arrears",
    1102: "Resource pack depleted or expired",
    1103: "Unauthorized access to requested resource",
    1200: "Invalid request parameters",
    1201: "Invalid parameters",
    1202: "The requested method is invalid",
    1203: "task not found",
    1300: "Trigger strategy of the platform",
    1301: "Trigger the content security policy of the platform",
    1302: "The API request is too fast, exceeding the platform's rate limit",
    1303: "parallel task over resource pack limit",
    1304: "Trigger the platform's IP whitelisting policy",
    5000: "Server internal error",
    5001: "Server temporarily unavailable",
    5002: "Server internal timeout",
}

STATUS_FOR_CODE: dict[int, int] = {
    **dict.fromkeys(range(1000, 1005), 401),
    1100: 429,
    1101: 429,
    1102: 429,
    1103: 403,
    1200: 400,
    1201: 400,
    1202: 404,
    1203: 404,
    1300: 400,
    1301: 400,
    1302: 429,
    1303: 429,
    1304: 429,
    5000: 500,
    5001: 503,
    5002: 504,
}

_MODELS: dict[
    str, type[Text2VideoRequest | Image2VideoRequest | VideoExtendRequest]
] = {
    ENDPOINTS["text2video"]: Text2VideoRequest,
    ENDPOINTS["image2video"]: Image2VideoRequest,
    ENDPOINTS["video-extend"]: VideoExtendRequest,
}
_IMAGE_FIELDS = ("image", "image_tail", "static_mask", "human_image", "cloth_image")
_MORE = re.compile(r" \(and \d+ more\)$")
_PROMPT_LIMIT = 2500


def _is_image(value: str) -> bool:
    if value.startswith(("http://", "https://")):
        return True
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _kling_message(text: str, body: dict[str, Any]) -> str:
    where, sep, message = text.partition(": ")
    if not sep:
        return text
    message = _MORE.sub("", message)
    if where == "request":
        return message
    if message == "Field required":
        return f"{where} is required"
    value = body.get(where)
    if isinstance(value, str | int | float) and len(str(value)) <= 100:
        return f"{where} value '{value}' is invalid"
    return f"{where} is invalid: {message}"


def validate_create(endpoint: str, body: dict[str, Any]) -> str | None:
    """The 1201 message for a create body, or None when Kling would accept it."""
    model_name = body.get("model_name")
    if model_name is not None and model_name not in KNOWN_MODELS:
        return "model is not supported"
    for key in _IMAGE_FIELDS:
        value = body.get(key)
        if value is not None and (not isinstance(value, str) or not _is_image(value)):
            return f"{key} is invalid: must be a URL or raw base64"
    for key in ("external_task_id", "callback_url"):
        if key in body and not isinstance(body[key], str):
            return f"{key} value is invalid: must be a string"
    model = _MODELS.get(endpoint)
    if model is not None:
        fields = {k: v for k, v in body.items() if k in model.model_fields}
        try:
            build_request(endpoint, fields)
        except RequestValidationError as exc:
            return _kling_message(exc.message, body)
        return None
    for key in ("prompt", "negative_prompt"):
        value = body.get(key)
        if value is not None and (
            not isinstance(value, str) or len(value) > _PROMPT_LIMIT
        ):
            return f"{key} is invalid: at most {_PROMPT_LIMIT} characters"
    n = body.get("n", 1)
    if endpoint.startswith("/v1/images/") and (
        not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 9
    ):
        return f"n value '{n}' is invalid"
    return None
