"""Kling's wire objects: the envelope, the task and its results.

Parsing is lenient where the docs leave room (ids as numbers or strings, optional
fields missing, unknown fields present, any status spelling we know of) and strict
where a mistake would lose work (a task without an id is an error).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from klingmon.domain import KLING_STATUSES, Cost, Snapshot, TaskStatus

__all__ = [
    "Audio",
    "BalanceDeduction",
    "Envelope",
    "Image",
    "ParentVideo",
    "Task",
    "TaskInfo",
    "TaskResult",
    "Video",
    "WatermarkInfo",
    "legacy_cost",
    "parse_status",
    "snapshot",
]


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


class Audio(_Wire):
    """A legacy audio result: one id, an mp3 and a wav."""

    id: str | None = None
    url_mp3: str | None = None
    url_wav: str | None = None
    duration_mp3: str | None = None
    duration_wav: str | None = None

    def files(self) -> list[dict[str, Any]]:
        """The mp3 and the wav, each one file of the stored result shape."""
        files = []
        for fmt, url, duration in (
            ("mp3", self.url_mp3, self.duration_mp3),
            ("wav", self.url_wav, self.duration_wav),
        ):
            if url:
                item = {"id": self.id, "url": url, "format": fmt, "duration": duration}
                files.append({k: v for k, v in item.items() if v is not None})
        extra_url = (self.model_extra or {}).get("url")
        if not files and isinstance(extra_url, str) and extra_url:
            files.append(
                {"id": self.id, "url": extra_url} if self.id else {"url": extra_url}
            )
        return files


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
    audios: list[Audio] = Field(default_factory=list)

    @field_validator("videos", "images", "audios", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


class BalanceDeduction(_Wire):
    """Cash charged to a balance account: the discounted quota and the list price."""

    quota: str | None = None
    list_price: str | None = None


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
    #: ``{quota, list_price}`` in the callback schema; a plain amount is taken too.
    final_balance_deduction: BalanceDeduction | str | None = None
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
        """Every result file's URL: videos, images, then audio files."""
        return (
            [v.url for v in self.task_result.videos]
            + [i.url for i in self.task_result.images]
            + [f["url"] for a in self.task_result.audios for f in a.files()]
        )


class Envelope(_Wire):
    """``{code, message, request_id, data}``; ``code`` 0 means success."""

    code: int
    message: str = ""
    request_id: str | None = None
    data: Any = None


def _units(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def legacy_cost(task: Task) -> Cost | None:
    """``final_unit_deduction`` and ``final_balance_deduction`` as one cost record."""
    balance = task.final_balance_deduction
    if isinstance(balance, BalanceDeduction):
        cash, list_price = _units(balance.quota), _units(balance.list_price)
    else:
        cash, list_price = _units(balance), None
    cost = Cost(
        units=_units(task.final_unit_deduction), cash=cash, list_price=list_price
    )
    return None if cost.is_empty else cost


_LISTS = ("videos", "images", "audios")


def _stored_result(task: Task) -> dict[str, Any] | None:
    """The legacy ``task_result`` in the stored shape; None when it holds nothing."""
    result = task.task_result.model_dump(mode="json", exclude={"audios"})
    audios = [f for a in task.task_result.audios for f in a.files()]
    if audios:
        result["audios"] = audios
    extra = set(result) - set(_LISTS)
    # Videos and images are always present in the dump: a result with neither
    # files nor extra fields is no result.
    return result if task.urls or extra else None


def snapshot(task: Task) -> Snapshot:
    """The legacy wire task in klingmon's words."""
    cost = legacy_cost(task)
    return Snapshot(
        task_id=task.task_id,
        status=task.status,
        raw_status=task.task_status,
        message=task.task_status_msg,
        external_task_id=task.external_task_id,
        created_ms=task.created_at,
        updated_ms=task.updated_at,
        result=_stored_result(task),
        units=cost.units if cost is not None else None,
        wire=task.model_dump(mode="json"),
        cost=cost,
    )
