"""Resource packs and what tasks charge them: the truth behind ``/account/costs``.

A task's charge is decided when it is created (its outcome is drawn then): the
first pack of its type with enough units left pays, else the cash balance. The
charge takes effect when the task succeeds, so remaining counts fall as tasks end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from klingmon._clock import to_ms

if TYPE_CHECKING:
    from klingmon.sim._config import ResourcePack

__all__ = ["Charge", "Ledger"]

#: Cash per unit when no pack pays: UNCONFIRMED, plausible figures.
_CASH_PER_UNIT = 0.14
_LIST_PER_UNIT = 0.2
_YEAR = 365 * 86400


def _fmt(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".") or "0"


@dataclass(frozen=True, slots=True)
class Charge:
    """What one task is charged, from ``at`` (clock seconds) on."""

    amount: float
    package_type: str
    at: float
    #: Index into the account's packs, or None for the cash balance.
    pack: int | None

    def billing(self) -> dict[str, Any]:
        """One ``billing[]`` item of the new task object."""
        if self.pack is not None:
            return {
                "charge_type": "unit",
                "amount": _fmt(self.amount),
                "package_type": self.package_type,
            }
        return {
            "charge_type": "cash",
            "amount": _fmt(self.amount * _CASH_PER_UNIT),
            "cash_type": "balance",
            "currency": "USD",
            "list_price": _fmt(self.amount * _LIST_PER_UNIT),
        }


class Ledger:
    """The account's packs and the charges reserved against them."""

    def __init__(self, packs: tuple[ResourcePack, ...], opened: float) -> None:
        self._packs = packs
        self._opened = opened
        self._reserved = [0.0] * len(packs)
        self._charges: list[Charge] = []

    def charge(self, package_type: str, amount: float, at: float) -> Charge:
        """Reserve ``amount`` units for a task that succeeds at ``at``."""
        pack = None
        for i, info in enumerate(self._packs):
            if (
                info.package_type == package_type
                and info.total - self._reserved[i] >= amount
                and at < self._expires_ms(info) / 1000
            ):
                pack = i
                self._reserved[i] += amount
                break
        charge = Charge(amount, package_type, at, pack)
        self._charges.append(charge)
        return charge

    def charged(self, now: float) -> float:
        """Units charged as of ``now``, packs and cash balance alike."""
        return round(sum(c.amount for c in self._charges if c.at <= now), 4)

    def committed(self) -> float:
        """Units every task created so far is charged once it succeeds."""
        return round(sum(c.amount for c in self._charges), 4)

    def remaining(self, now: float) -> list[float]:
        """Units left in each pack as of ``now``."""
        left = [p.total for p in self._packs]
        for charge in self._charges:
            if charge.pack is not None and charge.at <= now:
                left[charge.pack] -= charge.amount
        return left

    def costs(self, now: float, name: str | None) -> dict[str, Any]:
        """``data`` of ``GET /account/costs``; no list at all without packs (live)."""
        data: dict[str, Any] = {"code": 0, "msg": "success"}
        opened = to_ms(self._opened - 86400)
        infos = [
            {
                "resource_pack_name": pack.name,
                "resource_pack_id": pack.pack_id or str(8000 + i),
                "resource_pack_type": pack.pack_type,
                "total_quantity": pack.total,
                "remaining_quantity": round(max(0.0, left), 4),
                "purchase_time": opened,
                "effective_time": opened,
                "invalid_time": self._expires_ms(pack),
                "status": _status(left, now < self._expires_ms(pack) / 1000),
            }
            for i, (pack, left) in enumerate(
                zip(self._packs, self.remaining(now), strict=True)
            )
            if name is None or pack.name == name
        ]
        if infos:
            data["resource_pack_subscribe_infos"] = infos
        return data

    def _expires_ms(self, pack: ResourcePack) -> int:
        if pack.expires_in is None:
            return to_ms(self._opened - 86400) + _YEAR * 1000
        return to_ms(self._opened + pack.expires_in)

    def remaining_by_name(self, now: float) -> dict[str, float]:
        return {
            p.name: round(left, 4)
            for p, left in zip(self._packs, self.remaining(now), strict=True)
        }


def _status(left: float, valid: bool) -> str:
    if not valid:
        return "expired"
    return "online" if left > 0 else "runOut"
