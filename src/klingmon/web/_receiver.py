"""The callback receiver's logic, apart from HTTP: check, dedupe, apply, wake.

Kling's authenticated API stays the source of truth: a terminal status from an
unsigned callback is only a hint (recorded as a ``hint`` event) and makes the task
due now, so that the engine's next poll confirms it before downloads and hooks act.
Everything else goes through :meth:`Store.apply` with ``source="callback"``, so the
lifecycle rules (ranks only rise, terminal never changes) hold for duplicates and
out-of-order deliveries exactly as for polls.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from klingmon._clock import Clock, SystemClock, to_ms
from klingmon.api._models import TERMINAL, Task, parse_status
from klingmon.engine._engine import CALLBACK_META_PREFIX
from klingmon.store import Observation
from klingmon.web._signature import SignatureError, verify_signature
from klingmon.web._tokens import token_matches

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from klingmon.store import Store, TaskRow

__all__ = ["MAX_BODY", "Outcome", "Receiver", "ReceiverSettings"]

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverSettings:
    """How callbacks are checked; ``webhook_secret`` is a ``whsec_`` string."""

    webhook_secret: str | None = None
    #: Confirm a terminal status from an unsigned callback with a GET first.
    confirm: bool = True
    max_body: int = MAX_BODY
    tolerance: float = 300.0

    def __repr__(self) -> str:  # the secret never shows
        signed = self.webhook_secret is not None
        return f"ReceiverSettings(signed={signed}, confirm={self.confirm})"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The HTTP answer, and the endpoint to wake the engine for (if any)."""

    status_code: int
    body: dict[str, Any]
    reason: str
    endpoint: str | None = None
    source: str | None = None
    lag_s: float | None = None


def _error(status_code: int, reason: str, detail: str) -> Outcome:
    return Outcome(status_code, {"error": reason, "detail": detail}, reason)


@dataclass
class Receiver:
    """Checks and applies callbacks; each call is a few short store transactions."""

    store: Store
    secret: bytes = field(repr=False)
    settings: ReceiverSettings = field(default_factory=ReceiverSettings)
    clock: Clock = field(default_factory=SystemClock)
    #: Called with the task's endpoint after a callback was taken in.
    on_callback: Callable[[str], None] | None = None
    _noted: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, token: str, body: bytes, headers: Mapping[str, str]) -> Outcome:
        """One delivery to ``/callbacks/kling/{token}``."""
        if len(body) > self.settings.max_body:
            return _error(413, "too_large", f"body over {self.settings.max_body} bytes")
        task = _parse(body)
        if isinstance(task, Outcome):
            return task
        row = self._lookup(task)
        if row is None:
            return _error(404, "unknown_task", "no such task is tracked here")
        if not token_matches(self.secret, row.external_task_id, token):
            return _error(403, "bad_token", "the callback token is not this task's")
        if row.task_id and row.task_id != task.task_id:
            return _error(409, "task_mismatch", "task_id does not match the task")
        now = self.clock.now()
        now_ms = to_ms(now)
        signed = False
        if self.settings.webhook_secret is not None:
            try:
                delivery = verify_signature(
                    self.settings.webhook_secret,
                    headers,
                    body,
                    now=now,
                    tolerance=self.settings.tolerance,
                )
            except SignatureError as exc:
                return _error(401, "bad_signature", str(exc))
            if not self.store.record_delivery(delivery.webhook_id, row.id, now_ms):
                return Outcome(200, {"status": "duplicate"}, "duplicate")
            signed = True
        return self._take(row, task, now, signed=signed)

    def _lookup(self, task: Task) -> TaskRow | None:
        external = task.external_task_id
        row = self.store.task(external) if external else None
        if row is None or (external and row.external_task_id != external):
            row = self.store.task(task.task_id) if task.task_id else None
        return row

    def _take(self, row: TaskRow, task: Task, now: float, *, signed: bool) -> Outcome:
        now_ms = to_ms(now)
        status = parse_status(task.task_status)
        lag = (now_ms - task.updated_at) / 1000 if task.updated_at else None
        self._note_flowing(row.endpoint, now)
        if row.status in TERMINAL:
            return Outcome(200, {"status": "ignored"}, "already_final", row.endpoint)
        if status in TERMINAL and not signed and self.settings.confirm:
            self.store.note(
                row.id, now_ms, "callback", "hint", task.model_dump(mode="json")
            )
            if row.next_poll_ms is None or row.next_poll_ms > now_ms:
                self.store.schedule([(row.id, now_ms)])
            self.store.notify()  # a worker in another process confirms it at once
            logger.info("callback.hint", extra={"task": row.id, "status": status})
            return Outcome(
                202, {"status": "confirming"}, "hint", row.endpoint, "hint", lag
            )
        # A signed callback is as good as a GET; an unsigned one only when the user
        # turned confirmation off. Only confirmed results are ever downloaded.
        confirmed = signed or not self.settings.confirm
        observation = Observation(row.id, task, "callback", now_ms, confirmed=confirmed)
        changes = self.store.apply([observation], now_ms)
        logger.info(
            "callback.applied", extra={"task": row.id, "changed": bool(changes)}
        )
        if changes:
            self.store.notify()  # workers elsewhere react (downloads, hooks) at once
            return Outcome(
                200, {"status": "applied"}, "applied", row.endpoint, "callback", lag
            )
        return Outcome(200, {"status": "unchanged"}, "unchanged", row.endpoint)

    def _note_flowing(self, endpoint: str, now: float) -> None:
        """Tell engines in other processes (via ``meta``) that callbacks flow."""
        with self._lock:
            if now - self._noted.get(endpoint, 0.0) < 1.0:
                return
            self._noted[endpoint] = now
        self.store.meta_set(CALLBACK_META_PREFIX + endpoint, repr(now))


def _parse(body: bytes) -> Task | Outcome:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return _error(400, "malformed", "the body is not JSON")
    if not isinstance(data, dict):
        return _error(400, "malformed", "the body is not a JSON object")
    try:
        return Task.model_validate(data)
    except ValidationError as exc:
        fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
        return _error(422, "invalid", f"invalid task object: {', '.join(fields)}")
