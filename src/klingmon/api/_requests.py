"""Create requests that refuse only what Kling certainly refuses, before sending.

A request that breaks a documented limit (a required prompt, 2,500 characters, an
image over 10 MB, a documented exclusion, a documented duration list) raises
:class:`~klingmon.errors.RequestValidationError` naming the field, so that a bad row
never costs a round trip. Everything else goes to Kling: unknown fields pass through
(``voice_list``, ``multi_shot``, ``element_list``, …), and what the capability table
doubts comes back from :meth:`warnings`, never as a refusal.
"""

from __future__ import annotations

import base64
import binascii
import difflib
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from klingmon.api._capabilities import (
    LEGACY_DEFAULT_MODEL,
    capability_warnings,
    duration_refusal,
)
from klingmon.api._endpoints import (
    ENDPOINTS,
    Generation,
    generation_of,
    model_path,
    resolve_endpoint,
)
from klingmon.errors import RequestValidationError

__all__ = [
    "ENDPOINTS",
    "CameraConfig",
    "CameraControl",
    "GenericRequest",
    "Image2VideoRequest",
    "TaskRequest",
    "Text2VideoRequest",
    "VideoExtendRequest",
    "build_request",
    "encode_image",
    "place_fields",
    "resolve_endpoint",
]

PROMPT_LIMIT = 2500
IMAGE_LIMIT_BYTES = 10 * 1024 * 1024

CameraType = Literal[
    "simple", "down_back", "forward_up", "right_turn_forward", "left_turn_forward"
]


def encode_image(value: str | Path) -> str:
    """An image as Kling takes it: a URL, or raw base64 (a local file is read).

    A ``data:`` prefix is stripped, since Kling wants raw base64.
    """
    if isinstance(value, Path) or (
        not value.startswith(("http://", "https://", "data:"))
        and len(value) < 4096
        and Path(value).expanduser().is_file()
    ):
        path = Path(value).expanduser()
        data = path.read_bytes()
        if len(data) > IMAGE_LIMIT_BYTES:
            raise RequestValidationError(f"image file {path} is larger than 10 MB")
        return base64.b64encode(data).decode("ascii")
    if value.startswith(("http://", "https://")):
        return value
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestValidationError(
            "image is neither a URL, an existing file nor base64"
        ) from None
    if len(raw) > IMAGE_LIMIT_BYTES:
        raise RequestValidationError("image is larger than 10 MB")
    return value


#: Inputs that belong to one typed endpoint: on another one they are a mistake.
_INPUT_FIELDS = frozenset(
    {"image", "image_tail", "static_mask", "dynamic_masks", "video_id"}
)
#: Names a batch row carries beside the body (a typo of one is a typo too).
_ROW_FIELDS = ("endpoint",)
_TYPO_CUTOFF = 0.8


class _Request(BaseModel):
    # Unknown fields pass through to Kling: newer models take fields we never saw
    # (voice_list, multi_shot, element_list, ...). Only a likely mistake is
    # refused, as pydantic's own "extra_forbidden": a close misspelling of a known
    # field, another endpoint's input, or a name that is no identifier at all.
    model_config = ConfigDict(extra="allow", frozen=True)

    @classmethod
    def likely_mistakes(cls, data: dict[Any, Any]) -> list[Any]:
        """The keys of ``data`` that are almost surely not meant for Kling."""
        own = set(cls.model_fields)
        known = (*own, *_ROW_FIELDS)
        return [
            name
            for name in data
            if name not in own
            and (
                not isinstance(name, str)
                or not name.isidentifier()
                or name in _INPUT_FIELDS
                or difflib.get_close_matches(
                    name.lower(), known, n=1, cutoff=_TYPO_CUTOFF
                )
            )
        ]

    @classmethod
    def model_validate(
        cls,
        obj: Any,
        *,
        strict: bool | None = None,
        extra: Any | None = None,
        from_attributes: bool | None = None,
        context: Any | None = None,
        by_alias: bool | None = None,
        by_name: bool | None = None,
    ) -> Self:
        """Validate, refusing likely mistakes beside any other error of the body."""
        options: dict[str, Any] = {
            "strict": strict,
            "extra": extra,
            "from_attributes": from_attributes,
            "context": context,
            "by_alias": by_alias,
            "by_name": by_name,
        }
        mistakes = cls.likely_mistakes(obj) if isinstance(obj, dict) else []
        if not mistakes:
            return super().model_validate(obj, **options)
        errors: list[InitErrorDetails] = [
            {"type": "extra_forbidden", "loc": (str(name),), "input": obj[name]}
            for name in mistakes
        ]
        rest = {k: v for k, v in obj.items() if k not in mistakes}
        try:
            super().model_validate(rest, **options)
        except ValidationError as exc:
            errors += [
                {
                    "type": _error_type(e),
                    "loc": e["loc"],
                    "input": e.get("input"),
                    **({"ctx": e["ctx"]} if "ctx" in e else {}),  # type: ignore[typeddict-item]
                }
                for e in exc.errors()
            ]
        raise ValidationError.from_exception_data(cls.__name__, errors)

    #: The legacy path this request is POSTed to.
    path: ClassVar[str] = ""

    callback_url: str | None = None
    external_task_id: str | None = Field(default=None, max_length=256)

    def body(self) -> dict[str, Any]:
        """The JSON body, without fields left at None."""
        return self.model_dump(mode="json", exclude_none=True)

    def endpoint_path(self) -> str:
        return self.path

    @property
    def generation(self) -> Generation:
        return Generation.LEGACY

    def warnings(self) -> list[str]:
        """What the capability table doubts about this request (never a refusal)."""
        return capability_warnings(self.endpoint_path(), self.body())

    def with_ids(
        self, *, external_task_id: str | None, callback_url: str | None
    ) -> _Request:
        """A copy carrying klingmon's id and callback (unless the caller set them)."""
        return self.model_copy(
            update={
                "external_task_id": self.external_task_id or external_task_id,
                "callback_url": self.callback_url or callback_url,
            }
        )


class CameraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    horizontal: float = Field(default=0, ge=-10, le=10)
    vertical: float = Field(default=0, ge=-10, le=10)
    pan: float = Field(default=0, ge=-10, le=10)
    tilt: float = Field(default=0, ge=-10, le=10)
    roll: float = Field(default=0, ge=-10, le=10)
    zoom: float = Field(default=0, ge=-10, le=10)

    @model_validator(mode="after")
    def _one_axis(self) -> CameraConfig:
        moving = [name for name, v in self.model_dump().items() if v != 0]
        if len(moving) != 1:
            raise ValueError("exactly one of its six values must be non-zero")
        return self


class CameraControl(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: CameraType
    config: CameraConfig | None = None

    @model_validator(mode="after")
    def _config_for_simple(self) -> CameraControl:
        if self.type == "simple" and self.config is None:
            raise ValueError("type 'simple' needs a config")
        if self.type != "simple" and self.config is not None:
            raise ValueError(f"type {self.type!r} takes no config")
        return self


class _Generation(_Request):
    model_name: str | None = None
    prompt: str | None = Field(default=None, max_length=PROMPT_LIMIT)
    negative_prompt: str | None = Field(default=None, max_length=PROMPT_LIMIT)
    cfg_scale: float | None = Field(default=None, ge=0, le=1)
    mode: Literal["std", "pro"] | None = None
    #: Seconds as a string (the legacy wire type); which ones depends on the model.
    duration: str | None = None
    camera_control: CameraControl | None = None
    sound: Literal["on", "off"] | None = None
    watermark_info: dict[str, bool] | None = None

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip().isdigit():
            raise ValueError("must be a whole number of seconds as a string, e.g. '5'")
        model = info.data.get("model_name") or LEGACY_DEFAULT_MODEL
        refusal = duration_refusal(model, value)
        if refusal is not None:
            raise ValueError(refusal)
        return value


class Text2VideoRequest(_Generation):
    path: ClassVar[str] = ENDPOINTS["text2video"]

    prompt: str = Field(min_length=1, max_length=PROMPT_LIMIT)
    aspect_ratio: Literal["16:9", "9:16", "1:1"] | None = None


class Image2VideoRequest(_Generation):
    path: ClassVar[str] = ENDPOINTS["image2video"]

    image: str | None = None
    image_tail: str | None = None
    static_mask: str | None = None
    dynamic_masks: list[dict[str, Any]] | None = Field(default=None, max_length=6)

    @model_validator(mode="before")
    @classmethod
    def _encode_images(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in ("image", "image_tail", "static_mask"):
                if isinstance(data.get(key), (str, Path)) and data[key] != "":
                    data = {**data, key: encode_image(data[key])}
        return data

    @model_validator(mode="after")
    def _exclusive(self) -> Image2VideoRequest:
        if not self.image and not self.image_tail:
            raise ValueError("image or image_tail is required")
        groups = [
            bool(self.image_tail),
            bool(self.static_mask or self.dynamic_masks),
            self.camera_control is not None,
        ]
        if sum(groups) > 1:
            raise ValueError(
                "image_tail, motion masks and camera_control cannot be used together"
            )
        if self.duration == "10" and (groups[0] or groups[1]):
            raise ValueError("end frames and motion masks allow duration '5' only")
        return self


class VideoExtendRequest(_Request):
    path: ClassVar[str] = ENDPOINTS["video-extend"]

    video_id: str = Field(min_length=1)
    prompt: str | None = Field(default=None, max_length=PROMPT_LIMIT)
    negative_prompt: str | None = Field(default=None, max_length=PROMPT_LIMIT)
    cfg_scale: float | None = Field(default=None, ge=0, le=1)
    watermark_info: dict[str, bool] | None = None


_IMAGE_FIELDS = ("image", "image_tail", "static_mask", "human_image", "cloth_image")
_PROMPT_FIELDS = ("prompt", "negative_prompt")
#: Flat fields the new generation wants under ``settings`` and ``options``.
SETTINGS_FIELDS = frozenset(
    {"duration", "aspect_ratio", "resolution", "audio", "multi_shot"}
)
OPTIONS_FIELDS = frozenset({"callback_url", "external_task_id", "watermark_info"})


def _error_type(error: Any) -> Any:
    """A reported error's type, as ``from_exception_data`` takes it back."""
    if error["type"] == "value_error":
        return PydanticCustomError(
            "value_error", "Value error, {error}", error.get("ctx")
        )
    return error["type"]


def _check_prompts(where: str, body: dict[str, Any]) -> None:
    for key in _PROMPT_FIELDS:
        value = body.get(key)
        if isinstance(value, str) and len(value) > PROMPT_LIMIT:
            raise ValueError(f"{where}{key} has more than {PROMPT_LIMIT} characters")


def _check_images(body: dict[str, Any]) -> None:
    """Raw base64 images over 10 MB are refused; URLs and files are Kling's to judge."""
    for key in _IMAGE_FIELDS:
        value = body.get(key)
        if (
            isinstance(value, str)
            and not value.startswith(("http://", "https://"))
            and len(value) * 3 // 4 > IMAGE_LIMIT_BYTES
        ):
            raise ValueError(f"{key} is larger than 10 MB")


def _has_prompt(payload: dict[str, Any]) -> bool:
    if isinstance(payload.get("prompt"), str) and payload["prompt"].strip():
        return True
    contents = payload.get("contents")
    return isinstance(contents, list) and len(contents) > 0


class GenericRequest(BaseModel):
    """Any task path of either generation, with a body we pass through.

    A legacy ``/v1/...`` body is flat; a new-generation ``/<family>/<model>`` body
    keeps klingmon's ids under ``options`` (a top-level ``callback_url`` is silently
    ignored there).
    """

    model_config = ConfigDict(frozen=True)

    task_path: str
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("task_path")
    @classmethod
    def _known_shape(cls, value: str) -> str:
        try:
            generation = generation_of(value)
        except RequestValidationError as exc:
            raise ValueError(exc.message) from None
        if generation is Generation.V2026 and model_path(value) is None:
            raise ValueError(f"{value!r} is a query path, not a task path")
        return resolve_endpoint(value)

    @model_validator(mode="after")
    def _certain_limits(self) -> GenericRequest:
        _check_prompts("", self.payload)
        _check_images(self.payload)
        contents = self.payload.get("contents")
        if isinstance(contents, list):
            for index, item in enumerate(contents):
                if isinstance(item, dict):
                    _check_prompts(f"contents[{index}].", item)
        parts = model_path(self.task_path)
        if (
            parts is not None
            and parts.family == "text-to-video"
            and not _has_prompt(self.payload)
        ):
            raise ValueError("prompt is required for text-to-video")
        return self

    @property
    def generation(self) -> Generation:
        return generation_of(self.task_path)

    def body(self) -> dict[str, Any]:
        return dict(self.payload)

    def endpoint_path(self) -> str:
        return self.task_path.rstrip("/")

    def warnings(self) -> list[str]:
        """What the capability table doubts about this request (never a refusal)."""
        return capability_warnings(self.task_path, self.payload)

    def _options(self) -> dict[str, Any]:
        options = self.payload.get("options")
        return options if isinstance(options, dict) else {}

    @property
    def external_task_id(self) -> str | None:
        if self.generation is Generation.V2026:
            value = self._options().get("external_task_id")
        else:
            value = self.payload.get("external_task_id")
        return str(value) if value is not None else None

    def with_ids(
        self, *, external_task_id: str | None, callback_url: str | None
    ) -> GenericRequest:
        payload = dict(self.payload)
        target = payload
        if self.generation is Generation.V2026:
            target = {**self._options()}
            payload["options"] = target
        if external_task_id and not target.get("external_task_id"):
            target["external_task_id"] = external_task_id
        if callback_url and not target.get("callback_url"):
            target["callback_url"] = callback_url
        return GenericRequest(task_path=self.task_path, payload=payload)


def _flat_value(key: str, value: Any) -> Any:
    """A flat (batch-file) value in the new generation's types."""
    if key == "duration" and isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if key == "multi_shot" and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off"):
            return False
    if key == "audio" and isinstance(value, bool | str):
        lowered = str(value).strip().lower()
        if lowered in ("true", "on", "yes"):
            return "native"
        if lowered in ("false", "no", "none"):
            return "off"
    return value


def place_fields(endpoint: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A body with flat fields where the endpoint's generation wants them.

    Legacy bodies are flat and stay as given. For the new generation ``duration``,
    ``aspect_ratio``, ``resolution``, ``audio`` and ``multi_shot`` go under
    ``settings`` and ``callback_url``, ``external_task_id``, ``watermark_info`` under
    ``options``; a value already nested there wins over a flat one.
    """
    if generation_of(endpoint) is Generation.LEGACY:
        return dict(fields)
    body: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for key, value in fields.items():
        if key in SETTINGS_FIELDS:
            settings[key] = _flat_value(key, value)
        elif key in OPTIONS_FIELDS:
            options[key] = value
        elif key not in ("settings", "options"):
            body[key] = value
    for key, flat in (("settings", settings), ("options", options)):
        nested = fields.get(key)
        merged = {**flat, **nested} if isinstance(nested, dict) else flat
        if merged:
            body[key] = merged
    return body


TaskRequest = (
    Text2VideoRequest | Image2VideoRequest | VideoExtendRequest | GenericRequest
)

_BY_ENDPOINT: dict[str, type[_Request]] = {
    "text2video": Text2VideoRequest,
    "image2video": Image2VideoRequest,
    "video-extend": VideoExtendRequest,
}


def build_request(endpoint: str, fields: dict[str, Any]) -> TaskRequest:
    """A validated request from an endpoint name or path and plain fields.

    Flat fields land where the endpoint's generation wants them (see
    :func:`place_fields`). Raises :class:`RequestValidationError` naming the first
    field Kling certainly refuses; doubts are in the request's ``warnings()``.
    """
    path = resolve_endpoint(endpoint)
    name = path.removeprefix("/v1/videos/").strip("/")
    model = _BY_ENDPOINT.get(name)
    try:
        if model is None:
            body = place_fields(path, fields)
            return GenericRequest(task_path=path, payload=body)
        return model.model_validate(fields)  # type: ignore[return-value]
    except ValidationError as exc:
        raise RequestValidationError(describe_validation(exc)) from None


def describe_validation(exc: ValidationError) -> str:
    """One line naming the field and what is wrong with it (never the value)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "request"
    message = first["msg"].removeprefix("Value error, ")
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more)" if more else ""
    return f"{where}: {message}{suffix}"
