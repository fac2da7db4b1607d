"""Prometheus metrics, on a registry per app so that tests stay isolated.

Gauges that describe the store (tasks by status, outbox backlog, Kling requests and
1302/1303 answers of every worker) are read at scrape time. Detection lag and time
in queue / processing come from the event log, tailed at scrape time, so a receiver
running apart from the engine still shows what the engine's polls saw. Callbacks and
this process's own Kling requests are counted as they happen.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from klingmon.api import request_kind
from klingmon.domain import TERMINAL, TaskStatus
from klingmon.engine import Account

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.metrics_core import Metric

    from klingmon.store import EventRow, Store

__all__ = ["CONTENT_TYPE", "MeteredTransport", "Metrics"]

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
_PHASE_BUCKETS = (1, 5, 10, 30, 60, 120, 180, 300, 600, 1200, 3600)
_TAIL_CHUNK = 5000
_TAIL_MAX_CHUNKS = 20


class _StoreCollector:
    """Reads the store's current figures at each scrape."""

    def __init__(self, store: Store, account: Account) -> None:
        self._store = store
        self._account = account

    def collect(self) -> Iterator[Metric]:
        tasks = GaugeMetricFamily(
            "klingmon_tasks", "Tasks by status.", labels=["status"]
        )
        counts = self._store.tasks.count_by_status()
        for status in TaskStatus:
            tasks.add_metric([status.value], counts.get(status, 0))
        yield tasks
        yield GaugeMetricFamily(
            "klingmon_outbox_backlog",
            "Hook deliveries not yet done.",
            value=self._store.outbox.outbox_backlog(),
        )
        totals = self._store.reports.counter_totals()
        kinds = CounterMetricFamily(
            "klingmon_kling_requests",
            "Requests to Kling by every worker, by kind (store counters).",
            labels=["kind"],
        )
        for kind in ("create", "get", "list"):
            kinds.add_metric([kind], totals.get(kind, 0))
        yield kinds
        limited = CounterMetricFamily(
            "klingmon_kling_limited",
            "Creates refused for rate (1302) or concurrency (1303), every worker.",
            labels=["code"],
        )
        for code in ("1302", "1303"):
            limited.add_metric([code], totals.get(code, 0))
        yield limited
        yield from self._costs()
        yield from self._packs()
        yield from self._pools()

    def _pools(self) -> Iterator[Metric]:
        """Per concurrency pool: slots held, tasks holding them, tasks queued, and
        the limit the live workers hold (absent when none is alive)."""
        now_ms = int(time.time() * 1000)
        alive = [w.info for w in self._store.fleet.workers(now_ms) if w.alive]
        families = {
            name: GaugeMetricFamily(f"klingmon_pool_{name}", text, labels=["pool"])
            for name, text in (
                ("slots_used", "Slots a pool holds now (an image task holds n)."),
                ("tasks_in_flight", "Tasks holding a pool's slots."),
                ("tasks_queued", "Tasks waiting to be sent in a pool."),
                ("size", "A pool's slot limit, as the live workers hold it."),
            )
        }
        for f in self._store.reports.pool_figures(now_ms, alive):
            families["slots_used"].add_metric([f.pool], f.held)
            families["tasks_in_flight"].add_metric([f.pool], f.tasks)
            families["tasks_queued"].add_metric([f.pool], f.queued)
            if f.limit is not None:
                families["size"].add_metric([f.pool], f.limit)
        yield from families.values()

    def _packs(self) -> Iterator[Metric]:
        """The account's packs as ``GET /account/costs`` last said (none: never)."""
        figures = self._account.latest()
        if figures is None:
            return
        remaining, total, expires = (
            GaugeMetricFamily(f"klingmon_pack_{name}", text, labels=["pack"])
            for name, text in (
                ("remaining_units", "Units left in a resource pack."),
                ("total_units", "Units a resource pack started with."),
                ("expires_timestamp_seconds", "When a resource pack expires."),
            )
        )
        for pack in figures.packs:
            if pack.remaining is not None:
                remaining.add_metric([pack.label], pack.remaining)
            if pack.total is not None:
                total.add_metric([pack.label], pack.total)
            if pack.expires_ms is not None:
                expires.add_metric([pack.label], pack.expires_ms / 1000)
        yield remaining
        yield total
        yield expires
        yield GaugeMetricFamily(
            "klingmon_account_costs_timestamp_seconds",
            "When GET /account/costs last answered (the packs' figures).",
            value=figures.fetched_ms / 1000,
        )

    def _costs(self) -> Iterator[Metric]:
        """What Kling charged per batch: pack units, and balance by currency."""
        units = GaugeMetricFamily(
            "klingmon_batch_units",
            "Resource-pack units Kling deducted for a batch's succeeded tasks.",
            labels=["batch"],
        )
        cash = GaugeMetricFamily(
            "klingmon_batch_cash",
            "Balance Kling deducted for a batch's succeeded tasks, by currency"
            ' ("" when Kling named none).',
            labels=["batch", "currency"],
        )
        for batch_id, summary in sorted(self._store.reports.batch_summaries().items()):
            units.add_metric([str(batch_id)], summary.units)
            for currency, amount in sorted(summary.cash.items()):
                cash.add_metric([str(batch_id), currency], amount)
        yield units
        yield cash
        yield from self._spend()

    def _spend(self) -> Iterator[Metric]:
        """The spend ledger per batch: quoted, reserved plus charged, charged."""
        families = {
            name: GaugeMetricFamily(
                f"klingmon_batch_{name}_units", text, labels=["batch"]
            )
            for name, text in (
                ("quoted", "Units a batch's quote expects."),
                ("counted", "Units reserved and charged: what counts against caps."),
                ("charged", "Units Kling charged, by the spend ledger."),
            )
        }
        for batch_id, figures in sorted(self._store.spend.by_batch().items()):
            for family, value in zip(families.values(), figures, strict=True):
                family.add_metric([str(batch_id)], value)
        yield from families.values()


class Metrics:
    """Every metric of one app; :meth:`render` is the ``/metrics`` body."""

    def __init__(self, store: Store, *, account: Account | None = None) -> None:
        self.store = store
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.callbacks = Counter(
            "klingmon_callbacks_received",
            "Callbacks received, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.rejected = Counter(
            "klingmon_callbacks_rejected",
            "Callbacks rejected, by reason.",
            ["reason"],
            registry=r,
        )
        self.requests = Counter(
            "klingmon_api_requests",
            "Requests this process sent to Kling, by route and outcome.",
            ["route", "outcome"],
            registry=r,
        )
        self.kling_codes = Counter(
            "klingmon_api_limited",
            "429 answers this process got from Kling, by Kling code (1302, 1303).",
            ["code"],
            registry=r,
        )
        self.lag = Histogram(
            "klingmon_detection_lag_seconds",
            "From Kling's updated_at to klingmon learning the status, by source.",
            ["source"],
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.queue = Histogram(
            "klingmon_queue_seconds",
            "Time tasks spent submitted (queued at Kling).",
            buckets=_PHASE_BUCKETS,
            registry=r,
        )
        self.processing = Histogram(
            "klingmon_processing_seconds",
            "Time tasks spent processing.",
            buckets=_PHASE_BUCKETS,
            registry=r,
        )
        r.register(_StoreCollector(store, account or Account(store=store)))
        self._last_event = 0
        self._started: dict[int, int] = {}
        self._tail_lock = threading.Lock()
        self._by_reason: dict[tuple[bool, str], Counter] = {}

    def callback(self, status_code: int, reason: str) -> None:
        key = (status_code >= 400, reason)
        counter = self._by_reason.get(key)
        if counter is None:  # labels() locks and hashes: once per reason, not per call
            family = self.rejected if key[0] else self.callbacks
            counter = self._by_reason[key] = family.labels(reason)
        counter.inc()

    def render(self) -> bytes:
        self._tail()
        return generate_latest(self.registry)

    def _tail(self) -> None:
        with self._tail_lock:
            for _ in range(_TAIL_MAX_CHUNKS):
                found = self.store.outbox.events(
                    since_id=self._last_event, limit=_TAIL_CHUNK
                )
                for event in found:
                    self._observe(event)
                if found:
                    self._last_event = found[-1].id
                if len(found) < _TAIL_CHUNK:
                    return

    def _observe(self, event: EventRow) -> None:
        payload: dict[str, Any] = event.payload
        # An unconfirmed callback's times are only claimed (see the receiver).
        claimed = payload.get("claimed")
        times = claimed if isinstance(claimed, dict) else payload
        updated = times.get("updated_at")
        created = times.get("created_at")
        learned = event.kind == "hint" or (
            event.kind == "status" and event.source in {"poll", "sweep", "callback"}
        )
        if learned and isinstance(updated, int):
            source = "poll" if event.source == "sweep" else event.source
            self.lag.labels(source).observe(max(0.0, (event.at_ms - updated) / 1000))
        if event.kind != "status" or not isinstance(updated, int):
            return
        if event.new_status == TaskStatus.PROCESSING:
            if isinstance(created, int):
                self.queue.observe(max(0.0, (updated - created) / 1000))
            self._started[event.task_id] = updated
        elif event.new_status in TERMINAL:
            start = self._started.pop(event.task_id, None)
            if start is not None:
                self.processing.observe(max(0.0, (updated - start) / 1000))


class MeteredTransport(httpx.AsyncBaseTransport):
    """Counts each request to Kling by route and outcome, around a real transport."""

    def __init__(self, metrics: Metrics, inner: httpx.AsyncBaseTransport) -> None:
        self._metrics = metrics
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route = request_kind(request)
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError as exc:
            self._metrics.requests.labels(route, type(exc).__name__).inc()
            raise
        self._metrics.requests.labels(route, str(response.status_code)).inc()
        if response.status_code == 429:
            await response.aread()
            code = _kling_code(response)
            if code is not None:
                self._metrics.kling_codes.labels(str(code)).inc()
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _kling_code(response: httpx.Response) -> int | None:
    try:
        data = response.json()
    except ValueError:
        return None
    code = data.get("code") if isinstance(data, dict) else None
    return code if isinstance(code, int) else None
