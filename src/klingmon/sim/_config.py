"""The simulator's knobs: how fast Kling time runs and which faults to inject."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

__all__ = ["Faults", "SimConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Faults:
    """Every rate is a probability 0..1, drawn from the simulator's seeded RNG."""

    #: Tasks that end ``failed`` with a realistic ``task_status_msg``.
    fail_rate: float = 0.03
    #: Tasks that stay ``processing`` forever.
    stuck_rate: float = 0.0
    #: Requests answered 500/5000, 503/5001 or 504/5002 (nothing is stored).
    error_5xx_rate: float = 0.0
    #: Requests answered 429/1302 (nothing is stored).
    rate_limit_rate: float = 0.0
    #: Real seconds added before each answer.
    latency: float = 0.0
    #: Creates stored, then the connection drops without an answer.
    drop_create_rate: float = 0.0
    #: 2xx answers whose body is not JSON (a create is still stored).
    malformed_rate: float = 0.0
    callback_drop_rate: float = 0.0
    callback_duplicate_rate: float = 0.0
    #: Kling seconds (divided by ``time_scale``) added to each callback.
    callback_delay: float = 0.0
    #: Tasks whose ``processing`` callback arrives after the final one.
    callback_reorder_rate: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in {"latency", "callback_delay"}:
                if value < 0:
                    raise ValueError(f"{f.name} must not be negative")
            elif not 0.0 <= value <= 1.0:
                raise ValueError(f"{f.name} must be a probability between 0 and 1")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Faults:
        """Faults from the JSON the admin endpoint takes; unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(unknown)}")
        return cls(**{k: float(v) for k, v in data.items()})


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """One simulated Kling account."""

    seed: int = 0
    #: 60 => one minute of Kling time passes per real second.
    time_scale: float = 1.0
    #: Account concurrency; one more => 429/1303.
    slots: int = 5
    access_key: str = "sim-access-key"
    secret_key: str = field(default="sim-secret-key", repr=False)
    #: A plain bearer key that is also accepted (2026 accounts); None disables it.
    api_key: str | None = field(default="sim-api-key", repr=False)
    faults: Faults = Faults()
    #: ``whsec_...`` => callbacks signed per Standard Webhooks.
    webhook_secret: str | None = field(default=None, repr=False)
    #: Serve the ``/admin/*`` endpoints.
    admin: bool = False
    list_order: Literal["newest", "oldest", "random"] = "newest"
    task_id_style: Literal["numeric", "base64"] = "numeric"
    #: Base for result URLs; default: the base URL of the create request.
    public_url: str | None = None
    #: Result files are padded (inside a ``free`` box) to at least this many bytes.
    media_size: int = 0
    #: Real seconds between two 64 KiB chunks of a result file (a slow CDN).
    media_chunk_delay: float = 0.0
    #: The first ``media_cut`` result-file answers stop halfway: the connection drops.
    media_cut: int = 0

    def __post_init__(self) -> None:
        if min(self.media_size, self.media_chunk_delay, self.media_cut) < 0:
            raise ValueError("media_size, media_chunk_delay and media_cut must be >= 0")
        if self.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        if self.slots < 1:
            raise ValueError("slots must be at least 1")
