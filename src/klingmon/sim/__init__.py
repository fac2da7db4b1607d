"""A local Kling API: the test double, the benchmark target and a free playground.

It speaks the legacy ``/v1`` API of the reference notes (§11): JWT or API-key auth,
Kling's envelope and codes, concurrency slots, a seeded task lifecycle on an
injected clock, callbacks (optionally Standard-Webhooks signed), playable result
files, and fault injection (random or scripted) with counters to check clients by.
"""

from __future__ import annotations

from klingmon.sim._config import Faults, SimConfig
from klingmon.sim._serve import run
from klingmon.sim._simulator import Simulator
from klingmon.sim._webhooks import sign as sign_webhook

__all__ = ["Faults", "SimConfig", "Simulator", "run", "sign_webhook"]
