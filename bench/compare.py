"""``python -m bench.compare OLD.json NEW.json``: are the virtual-time figures the same?

Virtual time is exact for a seed, so a change that should not alter behaviour must
leave every figure of every row both runs have equal; only wall-clock seconds may
differ. Rows are matched by (workload, contender, mode, generation), the curve's
points by their ``request_cost`` too; rows of only one run are listed, not failed (a
new generation's rows, say, or those ``make bench`` leaves to ``make bench-full``).
Exit status 1 on a change.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["differences", "main"]

#: Figures measured on the wall clock, which no seed fixes.
WALL = frozenset({"wall_s", "job_wall_s"})


def _rows(data: dict[str, Any]) -> dict[tuple[str, ...], dict[str, Any]]:
    curve = data.get("curve") or []
    rows: list[tuple[dict[str, Any], tuple[str, ...]]]
    rows = [(r, ()) for r in data.get("virtual") or []]
    rows += [(r, (f"request_cost {r['request_cost']}",)) for r in curve]
    return {
        (
            r["workload"],
            r["contender"],
            r["mode"],
            str(r.get("generation") or "legacy"),
            *point,
        ): {k: v for k, v in r["figures"].items() if k not in WALL}
        for r, point in rows
        if not _left(r["figures"])
    }


def _left(figures: dict[str, Any]) -> bool:
    """A row this run did not run because ``make bench`` leaves it to bench-full."""
    return bool(figures.get("not_run")) and "bench-full" in str(figures["why_not"])


def differences(
    old: dict[str, Any], new: dict[str, Any]
) -> tuple[dict[tuple[str, ...], dict[str, tuple[Any, Any]]], list[tuple[str, ...]]]:
    """({row: {figure: (old, new)}} for rows in both that differ, rows in one only)."""
    a, b = _rows(old), _rows(new)
    changed = {}
    for key in a.keys() & b.keys():
        diff = {
            f: (a[key].get(f), b[key].get(f))
            for f in sorted(a[key].keys() | b[key].keys())
            if a[key].get(f) != b[key].get(f)
        }
        if diff:
            changed[key] = diff
    return changed, sorted(a.keys() ^ b.keys())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__)
        return 2
    old, new = (json.loads(Path(p).read_text()) for p in args)
    changed, alone = differences(old, new)
    for key in alone:
        print("in one run only:", " / ".join(key))
    for key, diff in sorted(changed.items()):
        print("CHANGED:", " / ".join(key))
        for figure, (was, now) in diff.items():
            print(f"    {figure}: {was!r} -> {now!r}")
    both = len(_rows(old).keys() & _rows(new).keys())
    print(f"{both} rows in both runs, {len(changed)} changed")
    return 1 if changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
