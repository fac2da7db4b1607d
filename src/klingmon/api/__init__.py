"""The Kling API client: auth per generation, both wire adapters, requests, clients."""

from __future__ import annotations

from klingmon.api._auth import (
    ApiKeyAuth,
    GenerationAuth,
    JwtAuth,
    check_auth,
    generation_of_request,
)
from klingmon.api._capabilities import (
    CAPABILITIES,
    Capability,
    capability_warnings,
    model_of,
)
from klingmon.api._client import (
    DEFAULT_BASE_URL,
    AsyncKlingClient,
    KlingClient,
    TaskQuery,
)
from klingmon.api._endpoints import (
    Generation,
    ModelPath,
    generation_of,
    model_path,
    product_type_of,
)
from klingmon.api._models import (
    Audio,
    BalanceDeduction,
    Envelope,
    Image,
    ParentVideo,
    Task,
    TaskInfo,
    TaskResult,
    Video,
    WatermarkInfo,
    legacy_cost,
    parse_status,
)
from klingmon.api._protocol import request_kind
from klingmon.api._protocol2026 import TASKS_PATH
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
    place_fields,
    resolve_endpoint,
)
from klingmon.api._retry import RetryPolicy
from klingmon.api._tasks import AnyTask, generation_of_body, parse_task, snapshot_of
from klingmon.api._wire2026 import (
    AccountCosts,
    Charge,
    Output,
    ResourcePack,
    Task2026,
    TaskPage,
    cost_of_billing,
    snapshot2026,
)

#: Either generation's task in klingmon's words (the name the engine imports).
snapshot = snapshot_of

__all__ = [
    "CAPABILITIES",
    "DEFAULT_BASE_URL",
    "ENDPOINTS",
    "TASKS_PATH",
    "AccountCosts",
    "AnyTask",
    "ApiKeyAuth",
    "AsyncKlingClient",
    "Audio",
    "BalanceDeduction",
    "CameraConfig",
    "CameraControl",
    "Capability",
    "Charge",
    "Envelope",
    "Generation",
    "GenerationAuth",
    "GenericRequest",
    "Image",
    "Image2VideoRequest",
    "JwtAuth",
    "KlingClient",
    "ModelPath",
    "Output",
    "ParentVideo",
    "ResourcePack",
    "RetryPolicy",
    "Task",
    "Task2026",
    "TaskInfo",
    "TaskPage",
    "TaskQuery",
    "TaskRequest",
    "TaskResult",
    "Text2VideoRequest",
    "Video",
    "VideoExtendRequest",
    "WatermarkInfo",
    "build_request",
    "capability_warnings",
    "check_auth",
    "cost_of_billing",
    "encode_image",
    "generation_of",
    "generation_of_body",
    "generation_of_request",
    "legacy_cost",
    "model_of",
    "model_path",
    "parse_status",
    "parse_task",
    "place_fields",
    "product_type_of",
    "request_kind",
    "resolve_endpoint",
    "snapshot",
    "snapshot2026",
    "snapshot_of",
]
