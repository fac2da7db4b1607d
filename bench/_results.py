"""What the one-table benchmarks (``bench.pools``, ``bench.accounts``) share: their
command line and where their figures go."""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from pathlib import Path
from typing import Any

__all__ = ["RESULTS", "budget_from", "met", "save"]

RESULTS = Path(__file__).parent / "results"


def budget_from(prog: str, argv: list[str] | None) -> float:
    """The wall seconds allowed a run (``--budget``); quiets warnings and logs,
    which would only interleave with the table."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--budget", type=float, default=600.0, help="wall s per run")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    return float(args.budget)


def save(name: str, rows: list[dict[str, Any]], table: str) -> None:
    """``results/NAME.json`` and ``results/NAME.md``; the table on stdout."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(table)
    print(table)


def met(ok: bool) -> str:
    """A target table's last column."""
    return "yes" if ok else "**no**"
