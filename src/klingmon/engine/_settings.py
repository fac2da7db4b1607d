"""Settings of the engine: frozen, typed, validated once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from klingmon.errors import ConfigError
from klingmon.policy import AGING_MS, SchedulePolicy, StuckPolicy, parse_pool

if TYPE_CHECKING:
    from collections.abc import Callable

    from klingmon.downloads import DownloadSettings

__all__ = ["EngineSettings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSettings:
    """How the engine spends the account's slots and request budget."""

    #: The size of every concurrency pool not in ``pools`` (Kling's 1303 limit).
    slots: int = 5
    #: Sizes of named pools, ``(label, size)``: ``kling-3.0/video``, ``MODEL/image``
    #: (see :func:`klingmon.policy.parse_pool`).
    pools: tuple[tuple[str, int], ...] = ()
    #: Per named account, the size of its pools not in ``pools`` (``[accounts.NAME]
    #: slots``); an account not named here has ``slots``.
    account_slots: tuple[tuple[str, int], ...] = ()
    #: Count per pool (account x model version x pack type), as Kling does. False:
    #: the single-number governor of before, every task one slot of ``slots`` for
    #: the account (the benchmark's baseline).
    pooled: bool = True
    #: Requests per second the governor starts from (it backs off on 1302/429).
    rate: float = 10.0
    #: The ceiling the request rate may grow back to.
    max_rate: float = 50.0
    #: Requests in flight at once.
    parallel_requests: int = 8
    #: How long a claim on a task is held before another worker may take it.
    lease_seconds: float = 120.0
    #: Sweep an endpoint's list pages when at least this many of its tasks are due.
    sweep_min: int = 2
    page_size: int = 500
    max_pages: int = 10
    #: New generation: task ids per ``GET /tasks?task_ids=`` (one request each; the
    #: client shrinks it when Kling refuses a long list).
    tasks_batch_size: int = 50
    #: Tasks claimed per round.
    claim_limit: int = 1000
    #: The account's spending caps in units per UTC day and month (None: none).
    daily_units: float | None = None
    monthly_units: float | None = None
    #: Per named account, its own caps: ``(name, daily, monthly)``.
    account_caps: tuple[tuple[str, float | None, float | None], ...] = ()
    #: Seconds between stuck / timeout checks.
    watchdog_interval: float = 5.0
    #: Longest sleep of the loop when nothing is due (a safety net, not a schedule).
    idle_max: float = 5.0
    #: Backoff for creates that failed transiently.
    submit_backoff_base: float = 1.0
    submit_backoff_cap: float = 60.0
    #: Seconds a priority waits without a slot to count one higher (aging: see
    #: ``klingmon.policy.level_order``); nothing waits behind higher work forever.
    priority_aging: float = AGING_MS / 1000
    #: Builds a task's callback_url from its external_task_id (set by the receiver).
    callback_url: Callable[[str], str] | None = None
    #: The accounts whose callbacks carry a signature the receiver checks (a
    #: Webhook Secret is set): a final one needs no confirming request.
    signed_accounts: frozenset[str] = frozenset()
    schedule: SchedulePolicy = field(default_factory=SchedulePolicy)
    stuck: StuckPolicy = field(default_factory=StuckPolicy)
    #: Seed for jitter, so that runs can be repeated exactly.
    seed: int | None = None
    #: Where and how results are downloaded; None: no automatic downloads.
    downloads: DownloadSettings | None = None

    def __post_init__(self) -> None:
        problems = [f"{name}: {rule}" for name, ok, rule in self._rules() if not ok]
        if problems:
            raise ConfigError("EngineSettings " + "; ".join(problems))

    def _rules(self) -> list[tuple[str, bool, str]]:
        """Each limit as (field, holds, what it says), so every broken one is named."""
        return [
            ("slots", self.slots >= 1, "must be at least 1"),
            (
                "pools",
                _pools_ok(self.pools),
                "must be MODEL/video or MODEL/image = >= 1",
            ),
            (
                "account_slots",
                all(size >= 1 for _, size in self.account_slots),
                "must be at least 1",
            ),
            ("rate", self.rate > 0, "must be positive"),
            ("max_rate", self.max_rate > 0, "must be positive"),
            ("parallel_requests", self.parallel_requests >= 1, "must be at least 1"),
            ("lease_seconds", self.lease_seconds > 0, "must be positive"),
            ("sweep_min", self.sweep_min >= 1, "must be at least 1"),
            ("page_size", 1 <= self.page_size <= 500, "must be within 1..500"),
            ("max_pages", self.max_pages >= 1, "must be at least 1"),
            ("tasks_batch_size", self.tasks_batch_size >= 1, "must be at least 1"),
            ("claim_limit", self.claim_limit >= 1, "must be at least 1"),
            ("watchdog_interval", self.watchdog_interval > 0, "must be positive"),
            ("idle_max", self.idle_max > 0, "must be positive"),
            ("submit_backoff_base", self.submit_backoff_base > 0, "must be positive"),
            ("priority_aging", self.priority_aging >= 0.001, "must be positive"),
            (
                "submit_backoff_cap",
                self.submit_backoff_cap >= self.submit_backoff_base,
                "must be at least submit_backoff_base",
            ),
        ]


def _pools_ok(pools: tuple[tuple[str, int], ...]) -> bool:
    try:
        for label, _ in pools:
            parse_pool(label)
    except ValueError:
        return False
    return all(size >= 1 for _, size in pools)
