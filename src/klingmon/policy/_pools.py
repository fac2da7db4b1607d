"""Concurrency pools as Kling counts them: account x model version x pack type.

Kling counts parallel tasks per account, model version and resource-pack type
(video / image), shared by the account's API keys; a video or try-on task takes one
slot, an image task ``n``. A 1303 on one pool says nothing of another. These are the
pure rules: which pool a create goes to, how many slots it takes, and how big a
pool is (configured per pool, else the account's ``slots``; learned per pool by
:class:`~klingmon.policy.SlotLimit`).

A model klingmon has never heard of is still sent: it gets its own pool of the
default size. Whether a legacy ``kling-v2-6`` and the new ``kling-2.6`` share a pool
is unconfirmed; they are kept apart (two names, two pools) until Kling says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from klingmon.api import model_of, model_path
from klingmon.policy._governor import SlotLimit

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "ACCOUNT_POOL",
    "DEFAULT_ACCOUNT",
    "LEGACY_POOL",
    "PoolKey",
    "PoolLimits",
    "account_problem",
    "parse_pool",
    "pool_members",
    "pool_of",
    "slots_of",
    "spread_pool",
]

#: The account a pool belongs to until several accounts are configured.
DEFAULT_ACCOUNT = "default"
#: Rows stored before pools existed that had ended already (they hold no slot).
LEGACY_POOL = "legacy"
#: The one pool of the single-number governor (``EngineSettings.pooled`` False).
ACCOUNT_POOL = "account"
_PACKS = frozenset({"video", "image"})
#: New-generation families whose tasks take image-pack slots.
_IMAGE_FAMILIES = frozenset({"image-generation", "omni-image", "image-editing"})
#: Image families whose task takes one slot whatever its ``n`` (try-on: one).
_ONE_SLOT_IMAGE = frozenset({"virtual-try-on"})


@dataclass(frozen=True, slots=True, order=True)
class PoolKey:
    """One pool: its account, model version and pack type (``video``/``image``)."""

    account: str
    model: str
    pack: str

    @property
    def label(self) -> str:
        """``kling-3.0/video``; ``acct:kling-3.0/video`` for another account."""
        base = f"{self.model}/{self.pack}"
        return base if self.account == DEFAULT_ACCOUNT else f"{self.account}:{base}"


def parse_pool(label: str) -> PoolKey:
    """The key of a label (:attr:`PoolKey.label`); ValueError when malformed."""
    account, sep, rest = label.strip().rpartition(":")
    model, slash, pack = rest.rpartition("/")
    if not slash or not model or pack not in _PACKS or (sep and not account):
        raise ValueError(
            f"pool {label!r} must be MODEL/video or MODEL/image"
            " (optionally ACCOUNT:MODEL/PACK), like kling-3.0/video"
        )
    return PoolKey(account if sep else DEFAULT_ACCOUNT, model, pack)


#: What an account's name may be: it is part of pool labels (``NAME:MODEL/PACK``) and
#: of its variables (``KLING_<NAME>_API_KEY``).
_ACCOUNT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
#: Joins the accounts of a spread pool's label (``a+b:kling-3.0/video``).
SPREAD = "+"


def account_problem(name: str) -> str | None:
    """Why ``name`` cannot name an account (None: it can)."""
    if not _ACCOUNT_NAME.fullmatch(name):
        return (
            f"account name {name!r} must be a letter then letters, digits or _"
            " (at most 40)"
        )
    return None


def spread_pool(accounts: Sequence[str], key: PoolKey) -> str:
    """The label queued tasks of a batch sent on ``accounts`` wait under.

    One account: its own pool's label. Several: ``a+b:MODEL/PACK`` (sorted), a
    waiting room, never a pool Kling counts; the claim moves each task to the
    freest member's pool (:func:`pool_members`) before it is sent.
    """
    names = sorted(set(accounts)) or [DEFAULT_ACCOUNT]
    if len(names) == 1:
        return PoolKey(names[0], key.model, key.pack).label
    return f"{SPREAD.join(names)}:{key.model}/{key.pack}"


def pool_members(label: str) -> list[str]:
    """The pools a label stands for: a spread label's members, else itself."""
    account, sep, rest = label.rpartition(":")
    if not sep or SPREAD not in account:
        return [label]
    model, _, pack = rest.rpartition("/")
    return [PoolKey(a, model, pack).label for a in account.split(SPREAD)]


def _pack_and_family(endpoint: str) -> tuple[str, str]:
    parts = model_path(endpoint)
    if parts is not None:
        family = parts.family
        image = family in _IMAGE_FAMILIES or family in _ONE_SLOT_IMAGE
        return ("image" if image else "video"), family
    image = endpoint.startswith("/v1/images/")
    return ("image" if image else "video"), ("legacy-image" if image else "")


def pool_of(
    endpoint: str, body: Mapping[str, Any], account: str = DEFAULT_ACCOUNT
) -> PoolKey:
    """The pool a create takes its slots from.

    The model is the new path's segment, or the legacy ``model_name`` (Kling's
    documented default ``kling-v1`` when absent); the pack is ``image`` for the image
    endpoints, else ``video`` (a family Kling adds tomorrow is most likely video).
    """
    pack, _ = _pack_and_family(endpoint)
    return PoolKey(account, model_of(endpoint, body), pack)


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 1 else None
    if isinstance(value, str) and value.strip().isdigit():
        return max(1, int(value))
    return None


def slots_of(endpoint: str, body: Mapping[str, Any]) -> int:
    """The slots a create holds until it ends: ``n`` for an image task, else 1.

    ``n`` is read at the top level or in ``settings`` (1 when absent or not a
    count). A count Kling would refuse is no matter: a refused create holds nothing.
    """
    pack, family = _pack_and_family(endpoint)
    if pack != "image" or family in _ONE_SLOT_IMAGE:
        return 1
    settings = body.get("settings")
    inner = settings.get("n") if isinstance(settings, dict) else None
    return _count(body.get("n")) or _count(inner) or 1


@dataclass(slots=True)
class PoolLimits:
    """A learned slot limit per pool, each starting at its configured size.

    ``sizes`` maps a pool label (or ``MODEL/PACK`` for any account) to its size;
    ``accounts`` an account's own ``slots`` (its pools not sized so);
    ``default`` is the size of every other pool (the account's ``slots``). A 1303
    shrinks one pool only; a task that ends gives back slots to its own pool. The
    ``template`` is what a pool never heard of starts from; a signal for the whole
    account (no pool named) moves every pool and it.
    """

    default: int
    sizes: Mapping[str, int] = field(default_factory=dict)
    accounts: Mapping[str, int] = field(default_factory=dict)
    grow_every: int = 3
    _limits: dict[str, SlotLimit] = field(default_factory=dict, init=False)
    template: SlotLimit = field(init=False)

    def __post_init__(self) -> None:
        for label, size in self.sizes.items():
            parse_pool(label)
            if size < 1:
                raise ValueError(f"pool {label!r}: size must be at least 1")
        self.template = SlotLimit(self.default, self.default, self.grow_every)

    def size(self, pool: str) -> int:
        """The configured size of ``pool``: its exact label, then ``MODEL/PACK``
        for any account, then its account's ``slots``, then ``default``."""
        if pool in self.sizes:
            return self.sizes[pool]
        try:
            key = parse_pool(pool)
        except ValueError:
            return self.default
        fallback = self.accounts.get(key.account, self.default)
        return self.sizes.get(f"{key.model}/{key.pack}", fallback)

    def of(self, pool: str) -> SlotLimit:
        found = self._limits.get(pool)
        if found is None:
            size = self.size(pool)
            start = min(size, self.template.limit) if size == self.default else size
            found = SlotLimit(start, size, self.grow_every)
            self._limits[pool] = found
        return found

    def limit(self, pool: str) -> int:
        return self.of(pool).limit

    def limits(self) -> dict[str, int]:
        """The current limit of every pool seen or configured."""
        out = {label: self.limit(label) for label in self.sizes}
        out.update({label: lim.limit for label, lim in self._limits.items()})
        return dict(sorted(out.items()))

    def on_concurrency_error(self, pool: str | None, in_flight: int) -> None:
        """Kling said 1303 for ``pool`` with ``in_flight`` of its slots held."""
        if pool is None:
            self.template.on_concurrency_error(in_flight)
            for lim in self._limits.values():
                lim.on_concurrency_error(in_flight)
            return
        self.of(pool).on_concurrency_error(in_flight)

    def on_task_finished(self, pool: str | None) -> None:
        self.template.on_task_finished()
        if pool is not None:
            self.of(pool).on_task_finished()
