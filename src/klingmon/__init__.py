"""klingmon: submit, watch and collect Kling AI jobs; nothing paid is ever lost.

The public API is the fronts' only: clients and requests, :class:`Monitor`, the events
hooks receive, errors and settings (plus :mod:`klingmon.testing`). The store, the
engine and the downloader are internals the runtime assembles.
"""

from klingmon.api import (
    AsyncKlingClient,
    CameraConfig,
    CameraControl,
    GenericRequest,
    Image2VideoRequest,
    KlingClient,
    RetryPolicy,
    Task,
    TaskRequest,
    Text2VideoRequest,
    VideoExtendRequest,
    build_request,
)
from klingmon.batchfile import read_batch_file
from klingmon.config import Secret, Settings, load_settings
from klingmon.domain import ACTIVE, TERMINAL, TaskStatus
from klingmon.downloads import DownloadSettings
from klingmon.engine import EngineSettings, Monitor
from klingmon.errors import (
    AccountError,
    ApiError,
    AuthError,
    ConcurrencyLimitError,
    ConfigError,
    DownloadError,
    DownloadRefusedError,
    HookError,
    InputFileError,
    InvalidRequestError,
    KlingmonError,
    PolicyError,
    RateLimitError,
    RequestValidationError,
    SchemaDriftError,
    ServerError,
    StoreError,
    TaskFailedError,
    TaskNotFoundError,
    TransportError,
    UnexpectedResponseError,
    WaitTimeoutError,
)
from klingmon.hooks import HookEvent
from klingmon.policy import SchedulePolicy, StuckPolicy

__version__ = "0.1.0"

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "AccountError",
    "ApiError",
    "AsyncKlingClient",
    "AuthError",
    "CameraConfig",
    "CameraControl",
    "ConcurrencyLimitError",
    "ConfigError",
    "DownloadError",
    "DownloadRefusedError",
    "DownloadSettings",
    "EngineSettings",
    "GenericRequest",
    "HookError",
    "HookEvent",
    "Image2VideoRequest",
    "InputFileError",
    "InvalidRequestError",
    "KlingClient",
    "KlingmonError",
    "Monitor",
    "PolicyError",
    "RateLimitError",
    "RequestValidationError",
    "RetryPolicy",
    "SchedulePolicy",
    "SchemaDriftError",
    "Secret",
    "ServerError",
    "Settings",
    "StoreError",
    "StuckPolicy",
    "Task",
    "TaskFailedError",
    "TaskNotFoundError",
    "TaskRequest",
    "TaskStatus",
    "Text2VideoRequest",
    "TransportError",
    "UnexpectedResponseError",
    "VideoExtendRequest",
    "WaitTimeoutError",
    "build_request",
    "load_settings",
    "read_batch_file",
]
