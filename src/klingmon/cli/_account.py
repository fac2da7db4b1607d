"""The account's resource packs in ``status``, ``status --account`` and ``submit``:
units left per pack, when each expires, and packs about to expire with units left."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from klingmon.policy import EXPIRY_WARNING_DAYS, expiring_packs

if TYPE_CHECKING:
    from klingmon.policy import AccountFigures, PackFigure

__all__ = ["expiry_lines", "packs_json", "packs_table"]

_DAY_MS = 86_400_000


def _when(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%MZ")


def _units(value: float | None) -> str:
    return "?" if value is None else f"{value:,.2f}".rstrip("0").rstrip(".")


def _days(pack: PackFigure, now_ms: int) -> float:
    return max(0.0, ((pack.expires_ms or now_ms) - now_ms) / _DAY_MS)


def expiry_lines(figures: AccountFigures, now_ms: int) -> list[str]:
    """One warning per pack that expires within the warning window with units left."""
    return [
        f"Warning: resource pack {p.label} expires {_when(p.expires_ms)} (in "
        f"{_days(p, now_ms):.1f} days) with {_units(p.remaining)} units left"
        for p in expiring_packs(figures, now_ms)
    ]


def packs_table(figures: AccountFigures, now_ms: int) -> Table:
    """Each pack: units left of its total, status, when it expires."""
    soon = {id(p) for p in expiring_packs(figures, now_ms)}
    table = Table(
        title=f"Resource packs (as of {_when(figures.fetched_ms)})",
        box=None,
        pad_edge=False,
        title_justify="left",
    )
    table.add_column("pack")
    table.add_column("left", justify="right")
    table.add_column("of", justify="right")
    table.add_column("status")
    table.add_column("expires")
    for p in figures.packs:
        expires = _when(p.expires_ms)
        if id(p) in soon:
            expires += f" [bold yellow](in {_days(p, now_ms):.1f} days)[/]"
        table.add_row(
            escape(p.label),
            _units(p.remaining),
            _units(p.total),
            escape(p.status or ""),
            expires,
        )
    return table


def packs_json(figures: AccountFigures | None, now_ms: int) -> dict[str, Any]:
    """``status --account --json``: the packs, their time and those expiring soon."""
    if figures is None:
        return {"fetched_ms": None, "remaining": None, "packs": [], "expiring": []}
    soon = expiring_packs(figures, now_ms)
    return {
        "fetched_ms": figures.fetched_ms,
        "remaining": round(figures.remaining, 4),
        "packs": [
            {
                "name": p.name,
                "id": p.pack_id,
                "type": p.pack_type,
                "status": p.status,
                "remaining": p.remaining,
                "total": p.total,
                "effective_ms": p.effective_ms,
                "expires_ms": p.expires_ms,
            }
            for p in figures.packs
        ],
        "expiring": [p.label for p in soon],
        "expiry_warning_days": EXPIRY_WARNING_DAYS,
    }
