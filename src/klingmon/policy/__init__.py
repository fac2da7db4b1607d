"""Pure decisions: lifecycle, schedule, stuck, timeouts, errors, budgets, moderation,
prices, quotes and concurrency pools.

Nothing here does I/O or reads a clock; the engine, the clients and the benchmark
pass in data and time and act on the answers.
"""

from __future__ import annotations

from klingmon.policy._account import (
    EXPIRY_WARNING_DAYS,
    AccountFigures,
    PackFigure,
    expiring_packs,
    figures_of,
)
from klingmon.policy._consequences import (
    Consequences,
    Sample,
    Transition,
    consequences,
)
from klingmon.policy._durations import (
    Distribution,
    DurationBook,
    DurationKey,
    Phase,
    storage_key,
)
from klingmon.policy._errors import CreateAction, classify_create_error
from klingmon.policy._governor import Aimd, SlotLimit, backoff
from klingmon.policy._lifecycle import RANK, Verdict, judge, rank
from klingmon.policy._moderation import MODERATION_CODES, is_moderation_failure
from klingmon.policy._overdue import (
    DropRate,
    mean_duration,
    on_rounds,
    overdue_at,
    overdue_delay,
    overdue_lag,
    steady_unseen_rate,
    unseen_finish_rate,
    unseen_hazard,
)
from klingmon.policy._pools import (
    ACCOUNT_POOL,
    DEFAULT_ACCOUNT,
    LEGACY_POOL,
    PoolKey,
    PoolLimits,
    account_problem,
    parse_pool,
    pool_members,
    pool_of,
    slots_of,
    spread_pool,
)
from klingmon.policy._prices import (
    SHIPPED,
    Learned,
    PriceBook,
    Priced,
    PriceKey,
    PriceSource,
    parse_price_key,
    price_key,
    shipped_units,
)
from klingmon.policy._priority import (
    AGING_MS,
    AGING_RULE,
    PRIORITY_LIMIT,
    Waiting,
    effective_priority,
    level_order,
    priority_problem,
)
from klingmon.policy._quote import Quote, QuoteLine, build_quote, with_remaining
from klingmon.policy._repeats import request_hash
from klingmon.policy._schedule import (
    INTERVAL_RULE,
    Schedule,
    SchedulePolicy,
    finish_hazard,
    finish_rate,
    intervals_ordered,
    next_poll_delay,
    polls_per_hour,
    round_lag,
)
from klingmon.policy._spend import Budget, Spend, fits, settle
from klingmon.policy._stuck import StuckPolicy, is_stuck, stuck_after, timed_out

__all__ = [
    "ACCOUNT_POOL",
    "AGING_MS",
    "AGING_RULE",
    "DEFAULT_ACCOUNT",
    "EXPIRY_WARNING_DAYS",
    "INTERVAL_RULE",
    "LEGACY_POOL",
    "MODERATION_CODES",
    "PRIORITY_LIMIT",
    "RANK",
    "SHIPPED",
    "AccountFigures",
    "Aimd",
    "Budget",
    "Consequences",
    "CreateAction",
    "Distribution",
    "DropRate",
    "DurationBook",
    "DurationKey",
    "Learned",
    "PackFigure",
    "Phase",
    "PoolKey",
    "PoolLimits",
    "PriceBook",
    "PriceKey",
    "PriceSource",
    "Priced",
    "Quote",
    "QuoteLine",
    "Sample",
    "Schedule",
    "SchedulePolicy",
    "SlotLimit",
    "Spend",
    "StuckPolicy",
    "Transition",
    "Verdict",
    "Waiting",
    "account_problem",
    "backoff",
    "build_quote",
    "classify_create_error",
    "consequences",
    "effective_priority",
    "expiring_packs",
    "figures_of",
    "finish_hazard",
    "finish_rate",
    "fits",
    "intervals_ordered",
    "is_moderation_failure",
    "is_stuck",
    "judge",
    "level_order",
    "mean_duration",
    "next_poll_delay",
    "on_rounds",
    "overdue_at",
    "overdue_delay",
    "overdue_lag",
    "parse_pool",
    "parse_price_key",
    "polls_per_hour",
    "pool_members",
    "pool_of",
    "price_key",
    "priority_problem",
    "rank",
    "request_hash",
    "round_lag",
    "settle",
    "shipped_units",
    "slots_of",
    "spread_pool",
    "steady_unseen_rate",
    "storage_key",
    "stuck_after",
    "timed_out",
    "unseen_finish_rate",
    "unseen_hazard",
    "with_remaining",
]
