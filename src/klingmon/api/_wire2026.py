"""The new generation's wire objects: the task object, its outputs and its billing.

As lenient as the legacy adapter: ids as numbers or strings, optional fields
missing, unknown fields kept, an unknown output type kept aside, an undocumented
status mapped to None. A task without ``id`` or ``status`` is an error.

The task exposes the legacy task's reading names (``task_id``, ``task_status``,
``status``, ``external_task_id``, ``urls``) so code that only reads a task can take
either generation; :func:`snapshot2026` maps it onto the domain.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from klingmon.api._models import parse_status
from klingmon.domain import Cost, Snapshot, TaskStatus

__all__ = [
    "AccountCosts",
    "Charge",
    "Output",
    "ResourcePack",
    "Task2026",
    "TaskPage",
    "cost_of_billing",
    "snapshot2026",
]


class _Wire(BaseModel):
    model_config = ConfigDict(
        extra="allow", coerce_numbers_to_str=True, populate_by_name=True
    )


class Output(_Wire):
    """One typed result: ``video``, ``image``, ``audio``, ``voice`` or ``element``."""

    type: str = ""
    id: str | None = None
    url: str | None = None
    watermark_url: str | None = None
    #: Video length in seconds, as Kling writes it (a string).
    duration: str | None = None
    group_id: str | None = None
    mp3_url: str | None = None
    wav_url: str | None = None
    mp3_duration: str | None = None
    wav_duration: str | None = None
    name: str | None = None
    description: str | None = None
    element_type: str | None = None
    owned_by: str | None = None
    status: str | None = None
    references: list[Any] | None = None
    materials: list[Any] | None = None
    tags: list[Any] | None = None


class Charge(_Wire):
    """One ``billing[]`` item: units from a pack, or cash from the balance."""

    charge_type: str | None = None
    amount: str | None = None
    package_type: str | None = None
    cash_type: str | None = None
    currency: str | None = None
    list_price: str | None = None


class Task2026(_Wire):
    """One new-generation task as queries, creates and callbacks carry it."""

    id: str
    raw_status: str = Field(alias="status")
    message: str = ""
    #: Epoch milliseconds.
    create_time: int | None = None
    update_time: int | None = None
    external_id: str | None = None
    outputs: list[Output] = Field(default_factory=list)
    billing: list[Charge] | None = None

    @field_validator("outputs", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("message", mode="before")
    @classmethod
    def _none_is_blank(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("create_time", "update_time", mode="before")
    @classmethod
    def _numeric_string(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return value

    # -- the legacy task's reading names -------------------------------------

    @property
    def task_id(self) -> str:
        return self.id

    @property
    def task_status(self) -> str:
        return self.raw_status

    @property
    def task_status_msg(self) -> str:
        return self.message

    @property
    def status(self) -> TaskStatus | None:
        """Our status for Kling's string (``succeeded`` is ``SUCCEED``)."""
        return parse_status(self.raw_status)

    @property
    def external_task_id(self) -> str | None:
        return self.external_id

    @property
    def created_at(self) -> int | None:
        return self.create_time

    @property
    def updated_at(self) -> int | None:
        return self.update_time

    @property
    def urls(self) -> list[str]:
        """Every downloadable file's URL, in output order."""
        return _result_urls(result_of(self.outputs))

    def wire(self) -> dict[str, Any]:
        """The object as Kling spelled it (``status``, not ``raw_status``)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class TaskPage(_Wire):
    """One answer of ``POST /tasks``: a page of tasks and the cursor to the next."""

    result: list[Task2026] = Field(default_factory=list)
    count: int | None = None
    next_cursor: str | None = None
    has_more: bool = False

    @field_validator("result", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("next_cursor", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if value in ("", None) else value


class ResourcePack(_Wire):
    """One resource pack of ``GET /account/costs`` (counts may lag by hours)."""

    resource_pack_name: str | None = None
    resource_pack_id: str | None = None
    #: ``decreasing_total`` or ``constant_period``.
    resource_pack_type: str | None = None
    total_quantity: float | None = None
    remaining_quantity: float | None = None
    purchase_time: int | None = None
    effective_time: int | None = None
    invalid_time: int | None = None
    #: ``toBeOnline``, ``online``, ``expired``, ``runOut``.
    status: str | None = None


class AccountCosts(_Wire):
    """``data`` of ``GET /account/costs``; an account without packs has no list."""

    resource_pack_subscribe_infos: list[ResourcePack] = Field(default_factory=list)

    @field_validator("resource_pack_subscribe_infos", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


def _amount(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _add(total: float | None, value: float | None) -> float | None:
    if value is None:
        return total
    return value if total is None else total + value


def cost_of_billing(billing: list[Charge] | None) -> Cost | None:
    """One cost record from ``billing[]``; None when Kling sent no billing."""
    if not billing:
        return None
    units = cash = list_price = None
    currency = package_type = cash_type = None
    for charge in billing:
        amount = _amount(charge.amount)
        if charge.charge_type == "cash":
            cash = _add(cash, amount)
            list_price = _add(list_price, _amount(charge.list_price))
            currency = currency or charge.currency
            cash_type = cash_type or charge.cash_type
        else:  # "unit", or a charge type nobody documented: count it as units
            units = _add(units, amount)
            package_type = package_type or charge.package_type
    cost = Cost(
        units=units,
        cash=cash,
        currency=currency,
        package_type=package_type,
        list_price=list_price,
        cash_type=cash_type,
    )
    return None if cost.is_empty else cost


_KIND_OF_TYPE = {
    "video": "videos",
    "image": "images",
    "audio": "audios",
    "voice": "voices",
    "element": "elements",
}


def _audio_files(output: Output) -> list[dict[str, Any]]:
    """An audio output's mp3 and wav, each one file of the stored shape."""
    files = []
    for fmt, url, duration in (
        ("mp3", output.mp3_url, output.mp3_duration),
        ("wav", output.wav_url, output.wav_duration),
    ):
        if url:
            item = {"id": output.id, "url": url, "format": fmt, "duration": duration}
            files.append({k: v for k, v in item.items() if v is not None})
    return files


def result_of(outputs: list[Output]) -> dict[str, list[dict[str, Any]]]:
    """Typed outputs in the stored result shape (``domain.RESULT_KINDS``).

    An output of a type nobody documented goes to ``others`` (kept, never fetched).
    """
    result: dict[str, list[dict[str, Any]]] = {}
    for output in outputs:
        if output.type == "audio":
            result.setdefault("audios", []).extend(_audio_files(output))
            continue
        item = output.model_dump(mode="json", exclude_none=True)
        item.pop("type", None)
        if output.type == "element" and "references" not in item and output.materials:
            item["references"] = item.pop("materials")
        key = _KIND_OF_TYPE.get(output.type, "others")
        if key == "others":
            item["type"] = output.type
        result.setdefault(key, []).append(item)
    return result


def _result_urls(result: dict[str, list[dict[str, Any]]]) -> list[str]:
    return [
        item["url"]
        for key in _KIND_OF_TYPE.values()
        for item in result.get(key, [])
        if item.get("url")
    ]


def snapshot2026(task: Task2026) -> Snapshot:
    """The new-generation task in klingmon's words."""
    result = result_of(task.outputs)
    cost = cost_of_billing(task.billing)
    return Snapshot(
        task_id=task.id,
        status=task.status,
        raw_status=task.raw_status,
        message=task.message,
        external_task_id=task.external_id,
        created_ms=task.create_time,
        updated_ms=task.update_time,
        result=result or None,
        units=cost.units if cost is not None else None,
        wire=task.wire(),
        cost=cost,
    )
