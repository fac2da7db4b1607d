"""The Kling API client: auth, wire models, typed requests, sync and async clients."""

from __future__ import annotations

from klingmon.api._auth import ApiKeyAuth, JwtAuth
from klingmon.api._client import DEFAULT_BASE_URL, AsyncKlingClient, KlingClient
from klingmon.api._models import (
    Envelope,
    Image,
    ParentVideo,
    Task,
    TaskInfo,
    TaskResult,
    Video,
    WatermarkInfo,
    parse_status,
    snapshot,
)
from klingmon.api._protocol import request_kind
from klingmon.api._requests import (
    ENDPOINTS,
    CameraConfig,
    CameraControl,
    GenericRequest,
    Image2VideoRequest,
    TaskRequest,
    Text2VideoRequest,
    VideoExtendRequest,
    build_request,
    encode_image,
    resolve_endpoint,
)
from klingmon.api._retry import RetryPolicy

__all__ = [
    "DEFAULT_BASE_URL",
    "ENDPOINTS",
    "ApiKeyAuth",
    "AsyncKlingClient",
    "CameraConfig",
    "CameraControl",
    "Envelope",
    "GenericRequest",
    "Image",
    "Image2VideoRequest",
    "JwtAuth",
    "KlingClient",
    "ParentVideo",
    "RetryPolicy",
    "Task",
    "TaskInfo",
    "TaskRequest",
    "TaskResult",
    "Text2VideoRequest",
    "Video",
    "VideoExtendRequest",
    "WatermarkInfo",
    "build_request",
    "encode_image",
    "parse_status",
    "request_kind",
    "resolve_endpoint",
    "snapshot",
]
