"""How long tasks spend in ``submitted`` and ``processing``, learned per kind of task.

Kling publishes no timings, so klingmon starts from the seed's table (submitted 0-30 s,
processing 30-120 s std and 60-300 s pro, 10-s clips longer) and learns from every
finished task. Each distribution is a fixed log-spaced histogram (60 buckets, 1 s to
4 h): O(1) memory per key, mergeable between workers, a few hundred bytes of JSON in the
store. The prior is blended in as pseudo-observations whose weight fades as real samples
arrive, so a cold key behaves like the table and a warm key like its own history.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left
from enum import StrEnum
from functools import lru_cache
from itertools import accumulate
from typing import Any, Self

__all__ = [
    "BUCKETS",
    "HIGH",
    "LOW",
    "PRIOR_WEIGHT",
    "Distribution",
    "DurationBook",
    "DurationKey",
    "Phase",
    "storage_key",
]

#: (endpoint path, model_name, mode, duration); ``""`` for a part that is unknown.
DurationKey = tuple[str, str, str, str]


class Phase(StrEnum):
    """The two Kling states whose length klingmon learns."""

    SUBMITTED = "submitted"
    PROCESSING = "processing"


#: Histogram shape: bucket 0 is [0, LOW); buckets 1..BUCKETS-1 split [LOW, HIGH] evenly
#: in log space. Longer times count in the last bucket.
BUCKETS = 60
LOW = 1.0
HIGH = 4 * 3600.0
_EDGES: tuple[float, ...] = (
    0.0,
    *(LOW * (HIGH / LOW) ** (i / (BUCKETS - 1)) for i in range(BUCKETS)),
)

#: The prior counts as this many samples at first and fades as ``w**2 / (w + count)``.
PRIOR_WEIGHT = 10.0
#: Above this many weighted samples the history is halved, so old behaviour ages out.
_AGE_AT = 2000.0
_JSON_VERSION = 1
_Z90 = 1.2815515655446004  # standard normal 90th percentile


def _bucket(seconds: float) -> int:
    if seconds < LOW:
        return 0
    if seconds >= HIGH:
        return BUCKETS - 1
    i = 1 + int(math.log(seconds / LOW) / math.log(HIGH / LOW) * (BUCKETS - 1))
    return min(i, BUCKETS - 1)


def _fraction_in(i: int, seconds: float) -> float:
    """The share of bucket ``i`` lying below ``seconds`` (log-uniform inside)."""
    lo, hi = _EDGES[i], _EDGES[i + 1]
    if seconds <= lo:
        return 0.0
    if seconds >= hi:
        return 1.0
    if i == 0:
        return seconds / hi
    return math.log(seconds / lo) / math.log(hi / lo)


def _inside(i: int, fraction: float) -> float:
    """The inverse of :func:`_fraction_in`."""
    lo, hi = _EDGES[i], _EDGES[i + 1]
    if i == 0:
        return hi * fraction
    return float(lo * (hi / lo) ** fraction)


@lru_cache(maxsize=256)
def _lognormal_masses(median: float, sigma: float) -> tuple[float, ...]:
    """A lognormal's mass per bucket (what lies beyond HIGH goes to the last)."""

    def cdf(x: float) -> float:
        if x <= 0:
            return 0.0
        return 0.5 * math.erfc(-math.log(x / median) / (sigma * math.sqrt(2)))

    masses = [cdf(_EDGES[i + 1]) - cdf(_EDGES[i]) for i in range(BUCKETS)]
    masses[-1] += 1.0 - cdf(HIGH)
    total = sum(masses)
    return tuple(m / total for m in masses)


def _clip_factor(duration: str) -> float:
    """How much longer a clip of ``duration`` seconds takes than a 5-s one."""
    try:
        seconds = float(duration)
    except ValueError:
        return 1.0
    if not math.isfinite(seconds) or seconds <= 5:
        return 1.0
    return float(min((seconds / 5) ** 0.6, 4.0))


class Distribution:
    """A learned distribution of seconds spent in one phase, blended with a prior."""

    __slots__ = ("_cache", "_cache_key", "count", "median", "sigma", "weights")

    def __init__(
        self,
        median: float,
        sigma: float,
        weights: list[float] | None = None,
        count: int = 0,
    ) -> None:
        if not (median > 0 and sigma > 0):
            raise ValueError("the prior needs a positive median and sigma")
        #: The prior: a lognormal with this median (seconds) and log-space spread.
        self.median = float(median)
        self.sigma = float(sigma)
        self.weights = list(weights) if weights is not None else [0.0] * BUCKETS
        if len(self.weights) != BUCKETS:
            raise ValueError(f"expected {BUCKETS} buckets, got {len(self.weights)}")
        #: Samples observed (the prior does not count).
        self.count = count
        # The blended masses and their running sums, for the (count, weights) they
        # were made from: the scheduler reads a distribution thousands of times
        # between two samples.
        self._cache_key: tuple[int, int] | None = None
        self._cache: tuple[list[float], list[float]] = ([], [])

    @classmethod
    def lognormal(cls, low: float, high: float) -> Self:
        """A prior whose 10th and 90th percentiles are ``low`` and ``high`` seconds."""
        median = math.sqrt(low * high)
        sigma = math.log(high / low) / (2 * _Z90)
        return cls(median, sigma)

    @classmethod
    def prior(cls, phase: Phase, mode: str = "", duration: str = "") -> Self:
        """The cold-start guess from the seed's table, before any sample."""
        if phase is Phase.SUBMITTED:
            return cls.lognormal(2.0, 30.0)
        low, high = (60.0, 300.0) if mode == "pro" else (30.0, 120.0)
        factor = _clip_factor(duration)
        return cls.lognormal(low * factor, high * factor)

    # -- learning ---------------------------------------------------------------

    def add(self, seconds: float) -> None:
        """Record one observed stay of ``seconds``; negative or NaN is ignored."""
        if not seconds >= 0:  # also rejects NaN
            return
        self.weights[_bucket(seconds)] += 1.0
        self.count += 1
        if sum(self.weights) > _AGE_AT:
            self.weights = [w / 2 for w in self.weights]

    def merge(self, other: Distribution) -> None:
        """Add another worker's samples to these (the prior stays ours)."""
        self.weights = [a + b for a, b in zip(self.weights, other.weights, strict=True)]
        self.count += other.count

    def copy(self) -> Distribution:
        return Distribution(self.median, self.sigma, self.weights, self.count)

    # -- reading ----------------------------------------------------------------

    def _masses(self) -> tuple[list[float], list[float]]:
        """Each bucket's blended mass, and the running sums of those masses."""
        key = (self.count, id(self.weights))
        if self._cache_key != key:  # add() bumps count; aging and merge swap the list
            prior = _lognormal_masses(self.median, self.sigma)
            prior_weight = PRIOR_WEIGHT * PRIOR_WEIGHT / (PRIOR_WEIGHT + self.count)
            blended = [
                w + prior_weight * p for w, p in zip(self.weights, prior, strict=True)
            ]
            total = sum(blended)
            masses = [m / total for m in blended]
            self._cache = (masses, list(accumulate(masses)))
            self._cache_key = key
        return self._cache

    def cdf(self, t: float) -> float:
        """P(left the phase by ``t`` seconds)."""
        if t <= 0:
            return 0.0
        i = _bucket(t)
        if t >= HIGH:
            return 1.0
        masses, cumulative = self._masses()
        below = cumulative[i - 1] if i else 0.0
        return min(1.0, below + masses[i] * _fraction_in(i, t))

    def survival(self, t: float) -> float:
        """P(still in the phase at ``t`` seconds)."""
        return max(0.0, 1.0 - self.cdf(t))

    def quantile(self, q: float) -> float:
        """The time by which a share ``q`` (clamped to 0..1) has left the phase."""
        q = min(1.0, max(0.0, q))
        masses, cumulative = self._masses()
        i = bisect_left(cumulative, q)
        while i < BUCKETS and masses[i] <= 0:  # q == 0, or empty buckets at the top
            i += 1
        if i >= BUCKETS:
            return HIGH
        below = cumulative[i - 1] if i else 0.0
        return _inside(i, min(1.0, max(0.0, (q - below) / masses[i])))

    # -- storage ----------------------------------------------------------------

    def to_json(self) -> str:
        """A compact JSON form: the prior's parameters and the non-empty buckets."""
        data: dict[str, Any] = {
            "v": _JSON_VERSION,
            "median": self.median,
            "sigma": self.sigma,
            "count": self.count,
            "buckets": {str(i): w for i, w in enumerate(self.weights) if w},
        }
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> Distribution:
        data = json.loads(s)
        if data.get("v") != _JSON_VERSION:
            raise ValueError(f"unknown distribution format {data.get('v')!r}")
        weights = [0.0] * BUCKETS
        for index, weight in data["buckets"].items():
            weights[int(index)] = float(weight)
        return cls(data["median"], data["sigma"], weights, int(data["count"]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Distribution):
            return NotImplemented
        return (self.median, self.sigma, self.count, self.weights) == (
            other.median,
            other.sigma,
            other.count,
            other.weights,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Distribution(count={self.count}, p50={self.quantile(0.5):.1f}, "
            f"p99={self.quantile(0.99):.1f})"
        )


def storage_key(key: DurationKey, phase: Phase) -> str:
    """The string a (key, phase) pair is stored under: a JSON list, unambiguous."""
    return json.dumps([str(phase), *key], separators=(",", ":"))


def _parse_storage_key(s: str) -> tuple[DurationKey, Phase]:
    parts = json.loads(s)
    if not (isinstance(parts, list) and len(parts) == 5):
        raise ValueError(f"bad duration key {s!r}")
    phase, endpoint, model, mode, duration = (str(p) for p in parts)
    return (endpoint, model, mode, duration), Phase(phase)


#: Below this many samples of its own, an exact key borrows its endpoint's history.
_MIN_EXACT = 10


class DurationBook:
    """Every learned distribution, by (key, phase), with fallbacks.

    ``get`` answers from the exact key once it has enough samples, else from all models
    of the same endpoint, mode and duration, else from the prior. ``observe`` feeds both
    the exact key and that wider one.
    """

    def __init__(self) -> None:
        self._by_key: dict[tuple[DurationKey, Phase], Distribution] = {}
        #: Storage keys (see :func:`storage_key`) changed since the last :meth:`dump`.
        self.dirty: set[str] = set()

    @staticmethod
    def _wide(key: DurationKey) -> DurationKey:
        endpoint, _model, mode, duration = key
        return (endpoint, "", mode, duration)

    def _entry(self, key: DurationKey, phase: Phase) -> Distribution:
        dist = self._by_key.get((key, phase))
        if dist is None:
            dist = Distribution.prior(phase, key[2], key[3])
            self._by_key[key, phase] = dist
        return dist

    def observe(self, key: DurationKey, phase: Phase, seconds: float) -> None:
        """Learn that a task of ``key`` spent ``seconds`` in ``phase``."""
        if not seconds >= 0:
            return
        keys = {key, self._wide(key)}
        for k in keys:
            self._entry(k, phase).add(seconds)
            self.dirty.add(storage_key(k, phase))

    def get(self, key: DurationKey, phase: Phase) -> Distribution:
        """The best distribution known for ``key``; do not mutate it."""
        exact = self._by_key.get((key, phase))
        if exact is not None and exact.count >= _MIN_EXACT:
            return exact
        wide = self._by_key.get((self._wide(key), phase))
        if wide is not None and wide.count > 0:
            return wide
        if exact is not None:
            return exact
        return _prior(phase, key[2], key[3])

    def __len__(self) -> int:
        return len(self._by_key)

    def dump(self, *, dirty_only: bool = False) -> dict[str, str]:
        """Storage key → JSON of every (or every dirty) distribution; clears dirty."""
        out = {
            storage_key(key, phase): dist.to_json()
            for (key, phase), dist in self._by_key.items()
            if not dirty_only or storage_key(key, phase) in self.dirty
        }
        self.dirty.clear()
        return out

    @classmethod
    def load(cls, data: dict[str, str]) -> DurationBook:
        """Rebuild a book from :meth:`dump`'s output."""
        book = cls()
        for skey, text in data.items():
            key, phase = _parse_storage_key(skey)
            book._by_key[key, phase] = Distribution.from_json(text)
        return book


@lru_cache(maxsize=64)
def _prior(phase: Phase, mode: str, duration: str) -> Distribution:
    # Shared read-only instances; ``get`` documents that callers do not mutate.
    return Distribution.prior(phase, mode, duration)
