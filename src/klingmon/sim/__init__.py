"""A local Kling API: the test double, the benchmark target and a free playground.

It speaks both API generations over one task store and clock. Legacy (reference
§11): ``/v1/...`` with ``model_name`` in the body, JWT or API-key auth. New
(``kling-api-2026.md``): ``POST /<family>/<model>``, API keys only,
``GET /tasks?task_ids=`` and ``POST /tasks`` by cursor, typed ``outputs[]`` and
``billing[]``, resource packs behind ``GET /account/costs``. Both count concurrency
per model version x pack type (:mod:`klingmon.sim._pools`) and have Kling's envelope
and codes, a seeded task lifecycle on an injected clock, callbacks (optionally
Standard-Webhooks signed, two signatures during a rotation), playable result files,
and fault injection (random or scripted) with counters to check clients by.
"""

from __future__ import annotations

from klingmon.sim._accounts import SimAccounts, accounts_from_file
from klingmon.sim._config import (
    DEFAULT_NEW_MODELS,
    DEFAULT_RETIRED,
    Faults,
    PriceTable,
    ResourcePack,
    SimConfig,
)
from klingmon.sim._serve import run
from klingmon.sim._simulator import Simulator
from klingmon.sim._webhooks import sign as sign_webhook

__all__ = [
    "DEFAULT_NEW_MODELS",
    "DEFAULT_RETIRED",
    "Faults",
    "PriceTable",
    "ResourcePack",
    "SimAccounts",
    "SimConfig",
    "Simulator",
    "accounts_from_file",
    "run",
    "sign_webhook",
]
