"""The simulator's knobs: how fast Kling time runs and which faults to inject."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from klingmon.sim._prices import PriceTable

__all__ = [
    "DEFAULT_NEW_MODELS",
    "DEFAULT_PACKS",
    "DEFAULT_RETIRED",
    "Faults",
    "PriceTable",
    "ResourcePack",
    "SimConfig",
]

#: New-generation create paths (``/<family>/<model>``) the account knows.
DEFAULT_NEW_MODELS = frozenset(
    {
        "/text-to-video/kling-2.6",
        "/text-to-video/kling-3.0",
        "/text-to-video/kling-3.0-turbo",
        "/image-to-video/kling-2.5-turbo",
        "/image-to-video/kling-2.6",
        "/image-to-video/kling-3.0",
        "/image-to-video/kling-3.0-turbo",
        "/image-to-video/kling-3.0-omni",
        "/omni-video/kling-3.0-omni",
        "/omni-video/kling-o1",
        "/motion-control/kling-3.0",
        "/motion-control/kling-2.6",
        "/image-generation/kling-3.0",
        "/image-generation/kling-o1",
        "/omni-image/kling-3.0-omni",
        "/omni-image/kling-o1",
        "/text-to-audio/kling-audio",
        "/video-to-audio/kling-audio",
        "/custom-voice/kling-voice",
        "/custom-element/kling-element",
    }
)

#: Paths (legacy or new) and legacy ``model_name`` values answered as retired:
#: ``/v1/videos/multi-image2video`` answered "This API is no longer available" live.
DEFAULT_RETIRED = frozenset({"/v1/videos/multi-image2video"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourcePack:
    """One resource pack of the account (``GET /account/costs``); charged in order."""

    name: str
    #: ``video`` | ``image`` | ``audio``: the tasks it pays for.
    package_type: str = "video"
    total: float = 1000.0
    pack_id: str = ""
    pack_type: Literal["decreasing_total", "constant_period"] = "decreasing_total"
    #: Seconds from the simulator's start until the pack expires (``invalid_time``;
    #: then ``expired``, and it pays for nothing); None: a year after its purchase.
    expires_in: float | None = None

    def __post_init__(self) -> None:
        if self.total < 0:
            raise ValueError("a pack's total must be >= 0")


DEFAULT_PACKS = (
    ResourcePack(name="Video pack 1000", package_type="video", pack_id="8001"),
    ResourcePack(name="Image pack 1000", package_type="image", pack_id="8002"),
    ResourcePack(name="Audio pack 1000", package_type="audio", pack_id="8003"),
)


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
    #: Legacy: the slots of each video pool (one per ``model_name``); one more =>
    #: 429/1303. A one-model legacy workload has exactly these, as before pools.
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
    #: New generation: the ``/<family>/<model>`` create paths served.
    new_models: frozenset[str] = DEFAULT_NEW_MODELS
    #: Paths and legacy model names answered 400/1200 "This API is no longer
    #: available" (the code is UNCONFIRMED; the message was seen live).
    retired: frozenset[str] = DEFAULT_RETIRED
    #: New generation: the slots of each video pool (per model version).
    video_slots: int = 5
    #: Both generations: the slots of each image pool (per model version). A pool's
    #: size is its pack type's (the largest active pack), whichever path draws on it.
    image_slots: int = 10
    #: Most ids one ``GET /tasks`` takes (Kling's limit is UNCONFIRMED).
    max_query_ids: int = 50
    #: The account's resource packs; empty => ``/account/costs`` has no list.
    packs: tuple[ResourcePack, ...] = DEFAULT_PACKS
    #: Rotation: a second secret; callbacks then carry two ``v1,`` signatures.
    webhook_secret_previous: str | None = field(default=None, repr=False)
    #: What a task that succeeds is charged: overrides of the built-in table.
    prices: PriceTable = field(default_factory=PriceTable)
    #: Where a task's life (timings, failure) and its callbacks' faults are drawn
    #: from. ``order``: one stream in creation order, so the i-th task lives alike
    #: for every client sending the same bodies in the same order. ``prompt``: a
    #: stream of the task's own, keyed by its prompt (or whole body), so a task
    #: lives alike whatever order, and interleaving across pools, it is sent in.
    draws: Literal["order", "prompt"] = "order"
    #: With ``draws`` prompt: the seed of those streams (default: ``seed``). Accounts
    #: of :class:`~klingmon.sim.SimAccounts` need seeds of their own (their task ids
    #: differ); given one ``draws_seed``, a prompt lives alike on each.
    draws_seed: int | None = None

    def __post_init__(self) -> None:
        if min(self.media_size, self.media_chunk_delay, self.media_cut) < 0:
            raise ValueError("media_size, media_chunk_delay and media_cut must be >= 0")
        if self.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        if min(self.slots, self.video_slots, self.image_slots) < 1:
            raise ValueError("slots, video_slots and image_slots must be at least 1")
        if self.max_query_ids < 1:
            raise ValueError("max_query_ids must be at least 1")
