"""Kling's wire objects: the envelope, the task and its results.

Parsing is lenient where the docs leave room (ids as numbers or strings, optional
fields missing, unknown fields present, any status spelling we know of) and strict
where a mistake would lose work (a task without an id is an error).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "ACTIVE",
    "KLING_STATUSES",
    "TERMINAL",
    "Envelope",
    "Image",
    "ParentVideo",
    "Task",
    "TaskInfo",
    "TaskResult",
    "TaskStatus",
    "Video",
    "WatermarkInfo",
    "parse_status",
]


class TaskStatus(StrEnum):
    """Every state a task can be in; Kling's four use Kling's wire spelling."""

    #: Stored locally, waiting for a submission slot.
    QUEUED = "queued"
    #: The intent to create is stored; the POST may or may not have reached Kling.
    SUBMITTING = "submitting"
    #: Kling accepted the task and queued it.
    SUBMITTED = "submitted"
    #: Kling is generating.
    PROCESSING = "processing"
    #: Kling finished and the results are available (Kling spells it ``succeed``).
    SUCCEED = "succeed"
    #: Kling gave up on the task; ``task_status_msg`` says why.
    FAILED = "failed"
    #: Kling refused the create (validation, policy, depleted pack); nothing billed.
    REJECTED = "rejected"
    #: The user cancelled the task before it was sent.
    CANCELLED = "cancelled"


#: The states a task never leaves.
TERMINAL = frozenset(
    {TaskStatus.SUCCEED, TaskStatus.FAILED, TaskStatus.REJECTED, TaskStatus.CANCELLED}
)
#: The states in which Kling holds the task and it must be watched.
ACTIVE = frozenset({TaskStatus.SUBMITTED, TaskStatus.PROCESSING})
#: The statuses Kling itself reports.
KLING_STATUSES = frozenset(
    {
        TaskStatus.SUBMITTED,
        TaskStatus.PROCESSING,
        TaskStatus.SUCCEED,
        TaskStatus.FAILED,
    }
)

# Spellings seen outside the legacy API (the 2026 API says "succeeded").
_ALIASES = {"succeeded": TaskStatus.SUCCEED, "success": TaskStatus.SUCCEED}


def parse_status(raw: str) -> TaskStatus | None:
    """Map a status string from Kling to ours, or None when nobody documented it."""
    value = raw.strip().lower()
    if value in _ALIASES:
        return _ALIASES[value]
    try:
        status = TaskStatus(value)
    except ValueError:
        return None
    return status if status in KLING_STATUSES else None


class _Wire(BaseModel):
    model_config = ConfigDict(
        extra="allow", coerce_numbers_to_str=True, populate_by_name=True
    )


class Video(_Wire):
    id: str | None = None
    url: str
    duration: str | None = None
    watermark_url: str | None = None


class Image(_Wire):
    index: int | None = None
    url: str
    watermark_url: str | None = None


class ParentVideo(_Wire):
    id: str | None = None
    url: str | None = None
    duration: str | None = None


class TaskInfo(_Wire):
    external_task_id: str | None = None
    parent_video: ParentVideo | None = None


class TaskResult(_Wire):
    videos: list[Video] = Field(default_factory=list)
    images: list[Image] = Field(default_factory=list)

    @field_validator("videos", "images", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


class WatermarkInfo(_Wire):
    enabled: bool | None = None


class Task(_Wire):
    """One Kling task as the query, list, create and callback bodies carry it."""

    task_id: str
    task_status: str
    task_status_msg: str = ""
    task_info: TaskInfo = Field(default_factory=TaskInfo)
    task_result: TaskResult = Field(default_factory=TaskResult)
    #: Epoch milliseconds, as Kling sends them.
    created_at: int | None = None
    updated_at: int | None = None
    final_unit_deduction: str | None = None
    watermark_info: WatermarkInfo | None = None

    @field_validator("task_info", "task_result", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("task_status_msg", mode="before")
    @classmethod
    def _none_is_blank(cls, value: Any) -> Any:
        return "" if value is None else value

    @property
    def status(self) -> TaskStatus | None:
        """Our status for Kling's string; None for a status nobody documented."""
        return parse_status(self.task_status)

    @property
    def external_task_id(self) -> str | None:
        return self.task_info.external_task_id

    @property
    def urls(self) -> list[str]:
        """Every result file's URL, videos first."""
        return [v.url for v in self.task_result.videos] + [
            i.url for i in self.task_result.images
        ]


class Envelope(_Wire):
    """``{code, message, request_id, data}``; ``code`` 0 means success."""

    code: int
    message: str = ""
    request_id: str | None = None
    data: Any = None
