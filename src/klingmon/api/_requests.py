"""Typed create requests that enforce Kling's documented limits before anything is sent.

A request that breaks a limit raises :class:`~klingmon.errors.RequestValidationError`
naming the field, so that a bad row never costs a round trip, let alone a credit.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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
    "resolve_endpoint",
]

PROMPT_LIMIT = 2500
IMAGE_LIMIT_BYTES = 10 * 1024 * 1024

#: Short endpoint names and their legacy paths.
ENDPOINTS: dict[str, str] = {
    "text2video": "/v1/videos/text2video",
    "image2video": "/v1/videos/image2video",
    "video-extend": "/v1/videos/video-extend",
}

CameraType = Literal[
    "simple", "down_back", "forward_up", "right_turn_forward", "left_turn_forward"
]


def resolve_endpoint(endpoint: str) -> str:
    """A legacy path for a short name ("text2video") or a path given as is."""
    value = endpoint.strip()
    if value.startswith("/"):
        return value.rstrip("/")
    return ENDPOINTS.get(value, f"/v1/videos/{value}")


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


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The legacy path this request is POSTed to.
    path: ClassVar[str] = ""

    callback_url: str | None = None
    external_task_id: str | None = Field(default=None, max_length=256)

    def body(self) -> dict[str, Any]:
        """The JSON body, without fields left at None."""
        return self.model_dump(mode="json", exclude_none=True)

    def endpoint_path(self) -> str:
        return self.path

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
    duration: Literal["5", "10"] | None = None
    camera_control: CameraControl | None = None
    sound: Literal["on", "off"] | None = None
    watermark_info: dict[str, bool] | None = None


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


class GenericRequest(BaseModel):
    """Any other legacy task path of the same shape, with a body we pass through."""

    model_config = ConfigDict(frozen=True)

    task_path: str = Field(pattern=r"^/v1/[a-z0-9/_-]+$")
    payload: dict[str, Any] = Field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return dict(self.payload)

    def endpoint_path(self) -> str:
        return self.task_path.rstrip("/")

    @property
    def external_task_id(self) -> str | None:
        value = self.payload.get("external_task_id")
        return str(value) if value is not None else None

    def with_ids(
        self, *, external_task_id: str | None, callback_url: str | None
    ) -> GenericRequest:
        payload = dict(self.payload)
        if external_task_id and not payload.get("external_task_id"):
            payload["external_task_id"] = external_task_id
        if callback_url and not payload.get("callback_url"):
            payload["callback_url"] = callback_url
        return GenericRequest(task_path=self.task_path, payload=payload)


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

    Raises :class:`RequestValidationError` naming the first bad field.
    """
    name = endpoint.strip().removeprefix("/v1/videos/").strip("/")
    model = _BY_ENDPOINT.get(name)
    try:
        if model is None:
            return GenericRequest(task_path=endpoint, payload=fields)
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
