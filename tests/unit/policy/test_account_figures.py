"""The account's packs as kept: from Kling's answer, to JSON and back, and which
expire soon with units left."""

from __future__ import annotations

from klingmon.api import AccountCosts
from klingmon.policy import (
    EXPIRY_WARNING_DAYS,
    AccountFigures,
    PackFigure,
    expiring_packs,
    figures_of,
)

NOW_MS = 1_779_955_200_000
DAY_MS = 86_400_000


def _pack(name: str, *, left: float, status: str | None, days: float) -> PackFigure:
    return PackFigure(
        name=name,
        pack_id=None,
        pack_type="decreasing_total",
        total=100.0,
        remaining=left,
        status=status,
        effective_ms=NOW_MS - DAY_MS,
        expires_ms=round(NOW_MS + days * DAY_MS),
    )


def test_only_usable_packs_with_units_left_expiring_soon_are_pointed_out():
    """Within the window, online (or no status) and units left: soonest first."""
    figures = AccountFigures(
        fetched_ms=NOW_MS,
        packs=(
            _pack("later", left=50, status="online", days=EXPIRY_WARNING_DAYS + 1),
            _pack("soon", left=50, status="online", days=3),
            _pack("sooner", left=1, status=None, days=0.5),
            _pack("empty", left=0, status="online", days=1),
            _pack("run out", left=5, status="runOut", days=1),
            _pack("gone", left=50, status="expired", days=-1),
            _pack("edge", left=2, status="online", days=EXPIRY_WARNING_DAYS),
        ),
    )
    found = [p.name for p in expiring_packs(figures, NOW_MS)]
    assert found == ["sooner", "soon", "edge"]
    assert figures.remaining == 50 + 50 + 1 + 0 + 2


def test_kling_answer_to_figures_and_back():
    """Kling's fields map to the figures; dumps/loads is lossless, junk is None."""
    costs = AccountCosts.model_validate(
        {
            "resource_pack_subscribe_infos": [
                {
                    "resource_pack_name": "Video 1000",
                    "resource_pack_id": "8001",
                    "resource_pack_type": "decreasing_total",
                    "total_quantity": 1000,
                    "remaining_quantity": 990.5,
                    "effective_time": NOW_MS,
                    "invalid_time": NOW_MS + 2 * DAY_MS,
                    "status": "online",
                },
                {"remaining_quantity": 3},
            ]
        }
    )
    figures = figures_of(costs, NOW_MS)
    first, second = figures.packs
    assert (first.label, first.remaining, first.expires_ms) == (
        "Video 1000 (8001)",
        990.5,
        NOW_MS + 2 * DAY_MS,
    )
    assert second.label == "pack 2"
    assert AccountFigures.loads(figures.dumps()) == figures
    assert AccountFigures.loads("{not json") is None
    assert AccountFigures.loads('{"fetched_ms": 1}') is None
    assert figures_of(AccountCosts.model_validate({}), NOW_MS).packs == ()
