"""The account's resource packs as klingmon keeps them: what ``GET /account/costs``
said, when, and which packs are about to expire with units left."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from klingmon.api import AccountCosts, ResourcePack

__all__ = [
    "EXPIRY_WARNING_DAYS",
    "AccountFigures",
    "PackFigure",
    "expiring_packs",
    "figures_of",
]

#: A pack that expires within this many days with units left is pointed out.
EXPIRY_WARNING_DAYS = 7
_DAY_MS = 86_400_000
#: Statuses whose units can still pay (None: Kling said no status).
_USABLE = frozenset({None, "online"})


@dataclass(frozen=True, slots=True)
class PackFigure:
    """One resource pack: its units left and when it expires (epoch ms)."""

    name: str
    pack_id: str | None
    pack_type: str | None
    total: float | None
    remaining: float | None
    status: str | None
    effective_ms: int | None
    expires_ms: int | None

    @property
    def label(self) -> str:
        """The pack's name, with its id when it has one (names can repeat)."""
        return f"{self.name} ({self.pack_id})" if self.pack_id else self.name

    @property
    def usable(self) -> bool:
        return self.status in _USABLE


@dataclass(frozen=True, slots=True)
class AccountFigures:
    """The packs of one ``GET /account/costs`` answer and when it was received."""

    fetched_ms: int
    packs: tuple[PackFigure, ...]

    @property
    def remaining(self) -> float:
        """Units left in the packs that can pay now."""
        return sum(p.remaining or 0.0 for p in self.packs if p.usable)

    def to_json(self) -> dict[str, Any]:
        return {"fetched_ms": self.fetched_ms, "packs": [asdict(p) for p in self.packs]}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

    @classmethod
    def loads(cls, text: str) -> AccountFigures | None:
        """The figures :meth:`dumps` wrote, or None for anything else."""
        try:
            raw = json.loads(text)
            packs = tuple(PackFigure(**p) for p in raw["packs"])
            return cls(fetched_ms=int(raw["fetched_ms"]), packs=packs)
        except (ValueError, TypeError, KeyError):
            return None


def _pack(info: ResourcePack, index: int) -> PackFigure:
    return PackFigure(
        name=info.resource_pack_name or info.resource_pack_id or f"pack {index + 1}",
        pack_id=info.resource_pack_id,
        pack_type=info.resource_pack_type,
        total=info.total_quantity,
        remaining=info.remaining_quantity,
        status=info.status,
        effective_ms=info.effective_time,
        expires_ms=info.invalid_time,
    )


def figures_of(costs: AccountCosts, fetched_ms: int) -> AccountFigures:
    """What klingmon keeps of a ``GET /account/costs`` answer."""
    packs = costs.resource_pack_subscribe_infos
    return AccountFigures(
        fetched_ms=fetched_ms, packs=tuple(_pack(p, i) for i, p in enumerate(packs))
    )


def expiring_packs(
    figures: AccountFigures, now_ms: int, *, days: float = EXPIRY_WARNING_DAYS
) -> list[PackFigure]:
    """Usable packs with units left that expire within ``days`` of ``now_ms``,
    soonest first."""
    horizon = now_ms + days * _DAY_MS
    found = [
        p
        for p in figures.packs
        if p.usable
        and (p.remaining or 0.0) > 0
        and p.expires_ms is not None
        and now_ms <= p.expires_ms <= horizon
    ]
    return sorted(found, key=lambda p: p.expires_ms or 0)
