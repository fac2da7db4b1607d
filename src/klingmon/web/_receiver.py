"""The callback receiver's logic, apart from HTTP: check, dedupe, apply, wake.

Kling's authenticated API stays the source of truth: a terminal status from an
unsigned callback is only a hint (recorded as a ``hint`` event) and makes the task
due now, so that the engine's next poll confirms it before downloads and hooks act.
Everything else goes through :meth:`Store.apply` with ``source="callback"``, so the
lifecycle rules (ranks only rise, terminal never changes) hold for duplicates and
out-of-order deliveries exactly as for polls. An unconfirmed callback (no valid
signature, confirmation on) is cut down to its ids and status first: it may move
the status and wake the engine, never write a result, a cost, a message or a time.

Both callback formats come to the same route: the legacy ``task_id`` /
``task_status`` / ``task_result`` object and the new generation's bare task object
(``id`` / ``status`` / ``outputs`` / ``billing``); ``klingmon.api.parse_task``
tells them apart and ``snapshot_of`` maps either onto the domain. A task is matched
by its external id (the new format's ``external_id``) or its Kling id.

Without the token of the task the body names, an unknown task and a known one get
the same 403, so a caller without the URL learns nothing about which ids we track.

A callback is parsed where it arrives; its store work then joins a
:class:`GroupCommit`: callbacks that arrive together are looked up, checked and
applied together, in one transaction, and each is answered only once that
transaction committed. Within a group each task is taken in at most once per round,
so a second callback for it is judged against what the first one left.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from klingmon._clock import Clock, SystemClock, to_ms
from klingmon.api import Task, Task2026, parse_status, parse_task, snapshot_of
from klingmon.callback_tokens import token_matches
from klingmon.domain import ACTIVE, TERMINAL
from klingmon.store import GroupCommit, Notice, Observation
from klingmon.web._signature import SignatureError, verify_signature

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from klingmon.api import AnyTask
    from klingmon.store import Store, TaskRef

__all__ = ["MAX_BODY", "Outcome", "Receiver", "ReceiverSettings"]

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverSettings:
    """How callbacks are checked.

    ``webhook_secret`` is a ``whsec_`` string, or several separated by spaces or
    commas (any one verifying passes: during a rotation both are live).
    """

    webhook_secret: str | None = None
    #: Accounts with no Webhook Secret beside others with one: Kling sends their
    #: callbacks unsigned, so they are taken as when no secret is set at all.
    unsigned_accounts: frozenset[str] = frozenset()
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
    #: It reported a final status (a hint to confirm, or applied): a slot frees.
    finish: bool = False


def _error(status_code: int, reason: str, detail: str) -> Outcome:
    return Outcome(status_code, {"error": reason, "detail": detail}, reason)


_DUPLICATE = Outcome(200, {"status": "duplicate"}, "duplicate")
_UNKNOWN = _error(404, "unknown_task", "no such task is tracked here")
_BAD_TOKEN = _error(403, "bad_token", "the callback token is not this task's")
#: ``webhook-id`` values up to this long are kept as they are, longer ones hashed
#: whole (the column holds 200 characters; a cut would make two ids one delivery).
_MAX_WEBHOOK_ID = 128


@dataclass(frozen=True, slots=True)
class _Call:
    """A delivery whose body parsed: what the store half needs."""

    token: str
    body: bytes
    headers: Mapping[str, str]
    #: Either generation's task object (legacy ``task_id`` or new ``id``).
    task: AnyTask


@dataclass
class Receiver:
    """Checks and applies callbacks; concurrent ones share one commit."""

    store: Store
    secret: bytes = field(repr=False)
    settings: ReceiverSettings = field(default_factory=ReceiverSettings)
    clock: Clock = field(default_factory=SystemClock)
    #: Runs a group's blocking commit off the event loop (``await offload(fn, arg)``);
    #: None commits on the loop (see :class:`GroupCommit`).
    offload: Callable[..., Awaitable[Any]] | None = field(default=None, repr=False)
    _noted: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _group: GroupCommit[_Call, Outcome] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._group = GroupCommit(self.store, self._take, offload=self.offload)

    def handle(self, token: str, body: bytes, headers: Mapping[str, str]) -> Outcome:
        """One delivery to ``/callbacks/kling/{token}``, in a transaction of its own."""
        call = _check(token, body, headers, self.settings.max_body)
        if isinstance(call, Outcome):
            return call
        with self.store.transaction():
            return self._take([call])[0]

    async def handle_async(
        self, token: str, body: bytes, headers: Mapping[str, str]
    ) -> Outcome:
        """:meth:`handle` sharing one commit with every callback that came meanwhile."""
        call = _check(token, body, headers, self.settings.max_body)
        if isinstance(call, Outcome):
            return call
        return await self._group.run(call)

    # -- the store half, inside one transaction ------------------------------------

    def _take(self, calls: Sequence[_Call]) -> list[Outcome]:
        """Look up, check and apply ``calls``; one outcome each, in order."""
        now = self.clock.now()
        outcomes: dict[int, Outcome] = {}
        todo = list(range(len(calls)))
        while todo:  # a task named twice waits for the next round
            refs = [
                (calls[i].task.external_task_id, calls[i].task.task_id) for i in todo
            ]
            rows = self.store.tasks.match_tasks(refs)
            if len(todo) == len(calls):  # the first round names every task there is
                self.store.tasks.lock_tasks([row.id for row in rows if row is not None])
            taken: set[int] = set()
            later: list[int] = []
            batch: list[tuple[int, TaskRef | None]] = []
            for i, row in zip(todo, rows, strict=True):
                if row is not None and row.id in taken:
                    later.append(i)
                    continue
                if row is not None:
                    taken.add(row.id)
                batch.append((i, row))
            outcomes.update(self._round(calls, batch, now))
            todo = later
        return [outcomes[i] for i in range(len(calls))]

    def _round(
        self,
        calls: Sequence[_Call],
        batch: Sequence[tuple[int, TaskRef | None]],
        now: float,
    ) -> dict[int, Outcome]:
        now_ms = to_ms(now)
        outcomes: dict[int, Outcome] = {}
        hints: list[tuple[int, TaskRef, AnyTask]] = []
        applies: list[tuple[int, TaskRef, AnyTask, bool]] = []
        flowing: set[str] = set()
        for i, row in batch:
            call = calls[i]
            if row is None:
                outcomes[i] = self._unknown(call)
                continue
            signed = self._admit(call, row, now)
            if isinstance(signed, Outcome):
                outcomes[i] = signed
                continue
            flowing.add(row.endpoint)
            status = parse_status(call.task.task_status)
            if row.status in TERMINAL:
                outcomes[i] = Outcome(
                    200, {"status": "ignored"}, "already_final", row.endpoint
                )
            elif (
                not signed
                and self.settings.confirm
                and (status in TERMINAL or row.task_id is None)
            ):
                # A final status, or a task_id we never learned from Kling itself:
                # only a GET (or the lookup by external_task_id) may record either.
                hints.append((i, row, call.task))
            elif not signed and self.settings.confirm:
                applies.append((i, row, _status_only(call.task, now_ms), False))
            else:
                applies.append((i, row, call.task, signed))
        self._note_flowing(flowing, now)
        for i, row, task in hints:
            hint = _status_only(task, now_ms)
            payload = (
                hint.wire()
                if isinstance(hint, Task2026)
                else hint.model_dump(mode="json")
            )
            self.store.watch.note(row.id, now_ms, "callback", "hint", payload)
            logger.info("callback.hint", extra={"task": row.id})
            outcomes[i] = Outcome(
                202,
                {"status": "confirming"},
                "hint",
                row.endpoint,
                "hint",
                _lag(task, now_ms),
                finish=parse_status(task.task_status) in TERMINAL,
            )
        # Only a task Kling holds is made due: scheduling releases the lease, and a
        # queued or submitting task's lease is its submitter's, whose create may be
        # under way (released, another worker could look it up and send it again).
        due = [
            (row.id, now_ms)
            for _, row, _ in hints
            if row.status in ACTIVE
            and (row.next_poll_ms is None or row.next_poll_ms > now_ms)
        ]
        self.store.watch.schedule(due)
        # A signed callback is as good as a GET; an unsigned one only when the user
        # turned confirmation off. Only confirmed results are ever downloaded.
        observations = [
            Observation(
                row.id,
                snapshot_of(task),
                "callback",
                now_ms,
                confirmed=signed or not self.settings.confirm,
            )
            for _, row, task, signed in applies
        ]
        changed = {
            c.task.id: c.new_status
            for c in self.store.watch.apply(observations, now_ms)
        }
        for i, row, task, _ in applies:
            applied = row.id in changed
            logger.info("callback.applied", extra={"task": row.id, "changed": applied})
            outcomes[i] = (
                Outcome(
                    200,
                    {"status": "applied"},
                    "applied",
                    row.endpoint,
                    "callback",
                    _lag(task, now_ms),
                    finish=changed[row.id] in TERMINAL,
                )
                if applied
                else Outcome(200, {"status": "unchanged"}, "unchanged", row.endpoint)
            )
        # One channel tells every engine: this process's listeners hear each
        # callback taken in once the group committed; with news, so do (by NOTIFY)
        # workers elsewhere, who confirm, download and hook at once.
        notices = [
            Notice(frozenset({o.endpoint}), finish=o.finish)
            for _, o in sorted(outcomes.items())
            if o.endpoint is not None
        ]
        if notices or hints or changed:
            self.store.fleet.notify(*notices, news=bool(hints or changed))
        return outcomes

    def _unknown(self, call: _Call) -> Outcome:
        """No such task: a 404 only for a caller holding the id's own token."""
        named = call.task.external_task_id
        if named and token_matches(self.secret, named, call.token):
            return _UNKNOWN
        return _BAD_TOKEN

    def _admit(self, call: _Call, row: TaskRef, now: float) -> Outcome | bool:
        """A refusal, or whether the callback is signed (a new delivery)."""
        if not token_matches(self.secret, row.external_task_id, call.token):
            return _BAD_TOKEN
        if row.task_id and row.task_id != call.task.task_id:
            return _error(409, "task_mismatch", "task_id does not match the task")
        if (
            self.settings.webhook_secret is None
            or row.account in self.settings.unsigned_accounts
        ):
            return False
        try:
            delivery = verify_signature(
                self.settings.webhook_secret,
                call.headers,
                call.body,
                now=now,
                tolerance=self.settings.tolerance,
            )
        except SignatureError as exc:
            return _error(401, "bad_signature", str(exc))
        key = delivery_key(delivery.webhook_id)
        if not self.store.outbox.record_delivery(key, row.id, to_ms(now)):
            return _DUPLICATE
        return True

    def _note_flowing(self, endpoints: set[str], now: float) -> None:
        """Tell engines in any process (``callback_flow``) that callbacks flow."""
        with self._lock:
            due = sorted(e for e in endpoints if now - self._noted.get(e, 0.0) >= 1.0)
            for endpoint in due:
                self._noted[endpoint] = now
        self.store.flow.note_callbacks(due, to_ms(now))


def delivery_key(webhook_id: str) -> str:
    """What the store dedupes on: the id itself, or a hash of all of a long one."""
    if len(webhook_id) <= _MAX_WEBHOOK_ID:
        return webhook_id
    return "sha256:" + hashlib.sha256(webhook_id.encode()).hexdigest()


def _status_only(task: AnyTask, now_ms: int) -> AnyTask:
    """What an unconfirmed callback may say: which task, and its status hint.

    The times it claims ride along under ``claimed`` (no later than now) for the
    event log and the lag metrics; no store column reads them. The task keeps its
    generation, so the event log shows it as Kling spelt it.
    """
    times = {"created_at": task.created_at, "updated_at": task.updated_at}
    claimed = {k: min(v, now_ms) for k, v in times.items() if v is not None}
    extra = {"claimed": claimed} if claimed else {}
    if isinstance(task, Task2026):
        fields: dict[str, Any] = {"id": task.id, "status": task.raw_status}
        if task.external_id is not None:
            fields["external_id"] = task.external_id
        return Task2026.model_validate(fields | extra)
    data: dict[str, Any] = {
        "task_id": task.task_id,
        "task_status": task.task_status,
        "task_info": {"external_task_id": task.external_task_id},
    }
    return Task.model_validate(data | extra)


def _lag(task: AnyTask, now_ms: int) -> float | None:
    return (now_ms - task.updated_at) / 1000 if task.updated_at else None


def _check(
    token: str, body: bytes, headers: Mapping[str, str], max_body: int
) -> _Call | Outcome:
    """What needs no store: the size and the shape of the body."""
    if len(body) > max_body:
        return _error(413, "too_large", f"body over {max_body} bytes")
    task = _parse(body)
    if isinstance(task, Outcome):
        return task
    return _Call(token, body, headers, task)


def _parse(body: bytes) -> AnyTask | Outcome:
    """Either callback format: legacy ``task_id``/``task_status``, or the bare
    new-generation task object (``id``/``status``/``outputs``/``billing``)."""
    if b'"task_id"' in body:  # pydantic's own JSON parser: twice as fast
        try:
            return Task.model_validate_json(body)
        except ValidationError:
            pass  # whatever it refused, the steps below say exactly why
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return _error(400, "malformed", "the body is not JSON")
    if not isinstance(data, dict):
        return _error(400, "malformed", "the body is not a JSON object")
    try:
        return parse_task(data)
    except ValidationError as exc:
        fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
        return _error(422, "invalid", f"invalid task object: {', '.join(fields)}")
