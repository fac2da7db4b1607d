"""``Monitor``: the library front for batches, submission, watching and hooks."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING, Any, Self

from klingmon._clock import Clock, SystemClock, to_ms
from klingmon.api import (
    AsyncKlingClient,
    Generation,
    TaskQuery,
    generation_of,
    product_type_of,
    resolve_endpoint,
    snapshot,
)
from klingmon.domain import TERMINAL, BatchState
from klingmon.engine._account import Account
from klingmon.engine._clients import AccountClients
from klingmon.engine._engine import Engine
from klingmon.engine._quoting import Quoter
from klingmon.engine._settings import EngineSettings
from klingmon.errors import (
    NotFoundError,
    NothingToDoError,
    TaskNotFoundError,
    UsageError,
)
from klingmon.hooks import Hook, HookName, Hooks
from klingmon.policy import DEFAULT_ACCOUNT, priority_problem, request_hash
from klingmon.store import NewTask, Store, retry_batch

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from types import TracebackType

    from klingmon.api import AccountCosts, TaskRequest
    from klingmon.domain import Snapshot
    from klingmon.policy import Quote
    from klingmon.store import BatchRow

__all__ = ["Monitor", "new_task"]

logger = logging.getLogger(__name__)


def new_task(request: TaskRequest, *, deadline_ms: int | None = None) -> NewTask:
    """What the store keeps of a request: path, body and the fields to group by."""
    body = dict(request.body())
    external = body.pop("external_task_id", None)
    return NewTask(
        endpoint=request.endpoint_path(),
        body=body,
        prompt=_str(body.get("prompt")),
        model_name=_str(body.get("model_name")),
        mode=_str(body.get("mode")),
        duration=_str(body.get("duration")),
        deadline_ms=deadline_ms,
        external_task_id=_str(external),
    )


def _check_priority(value: int) -> None:
    problem = priority_problem(value)
    if problem is not None:
        raise UsageError(problem)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


class Monitor:
    """Submit batches and watch them to the end, through crashes and restarts.

    ``submit`` only writes to the store; ``run`` does the talking to Kling. Both can
    live in different processes: a restart of ``run`` resumes from the store.
    """

    def __init__(
        self,
        *,
        store: Store | None = None,
        db: str | None = None,
        client: AsyncKlingClient | None = None,
        settings: EngineSettings | None = None,
        clock: Clock | None = None,
        prices: Mapping[tuple[str, ...], float] | None = None,
        require_approval: bool = False,
        account: Account | None = None,
        clients: AccountClients | Mapping[str, AsyncKlingClient] | None = None,
    ) -> None:
        """``clients``: one Kling client per account, by name (``default``: the
        unnamed one); a batch submitted with ``accounts`` is sent on those."""
        self.store = store if store is not None else Store.open(db)
        self._client = client
        if clients is not None and not isinstance(clients, AccountClients):
            clients = AccountClients.of_clients(clients)
        self._clients = clients
        self.settings = settings or EngineSettings()
        self.clock = clock or SystemClock()
        self.hooks = Hooks()
        self._engine: Engine | None = None
        #: Every batch is stored ``awaiting approval`` unless ``submit(hold=False)``.
        self.require_approval = require_approval
        self._quoter = Quoter(self.store, overrides=prices, slots=self.settings.slots)
        #: The account's packs: asked at most once a second, refreshed by ``run``
        #: while work runs; share one among the monitors and apps of a process.
        self.account = (
            account
            if account is not None
            else Account(clock=self.clock, store=self.store)
        )

    @property
    def client(self) -> AsyncKlingClient:
        """The default account's client (the first account's, when no default)."""
        if self._client is None:
            if self._clients is not None:  # theirs to close
                return self._clients.of(self._clients.primary)
            self._client = AsyncKlingClient.from_env(clock=self.clock)
        return self._client

    @property
    def clients(self) -> AccountClients:
        """Every account's client (just the default one, unless given several)."""
        if self._clients is None:
            self._clients = AccountClients.single(self.client)
        return self._clients

    def _account_client(self, account: str | None) -> AsyncKlingClient:
        if account is None or (account == DEFAULT_ACCOUNT and self._clients is None):
            return self.client
        return self.clients.of(account)

    def _check_accounts(self, accounts: Sequence[str] | None) -> list[str] | None:
        """The accounts a batch names, each known (a typo is no account to pay)."""
        if not accounts:
            return None
        named = sorted(set(accounts))
        known = self.clients.names
        unknown = [a for a in named if a not in known]
        if unknown:
            raise UsageError(
                f"no account {unknown[0]!r} is configured (known: {', '.join(known)})"
            )
        return named

    # -- hooks -----------------------------------------------------------------

    def hook(self, name: HookName) -> Callable[[Hook], Hook]:
        """Register a callable for ``on_status``, ``on_succeed``, ``on_failed``, ..."""

        def register(fn: Hook) -> Hook:
            return self.hooks.add(name, fn)

        return register

    def on_status(self, fn: Hook) -> Hook:
        return self.hooks.add("on_status", fn)

    def on_succeed(self, fn: Hook) -> Hook:
        return self.hooks.add("on_succeed", fn)

    def on_failed(self, fn: Hook) -> Hook:
        return self.hooks.add("on_failed", fn)

    def on_stuck(self, fn: Hook) -> Hook:
        return self.hooks.add("on_stuck", fn)

    def on_timeout(self, fn: Hook) -> Hook:
        return self.hooks.add("on_timeout", fn)

    def on_budget(self, fn: Hook) -> Hook:
        """A batch paused (``paused: budget``): its next send would pass a cap."""
        return self.hooks.add("on_budget", fn)

    # -- work ------------------------------------------------------------------

    def quote(self, requests: Iterable[TaskRequest]) -> Quote:
        """What ``requests`` are expected to cost and take, sending nothing.

        Each line says whether its price is learned (from this store's finished
        tasks), shipped (the table, or ``prices``) or unknown.
        """
        return self._quoter.quote([new_task(r) for r in requests])

    async def account_costs(self) -> AccountCosts:
        """``GET /account/costs``, asked at most once a second (an answer under a
        second old is shared); kept in :attr:`account` and the store."""
        return await self.account.costs(self.client)

    def submit(
        self,
        requests: Iterable[TaskRequest],
        *,
        batch: str | None = None,
        timeout: float | None = None,
        priority: int = 0,
        hold: bool | None = None,
        max_units: float | None = None,
        allow_repeats: bool = False,
        accounts: Sequence[str] | None = None,
    ) -> BatchRow:
        """Store a batch of requests (all or nothing) with its quote; ``run`` sends
        them.

        ``priority``: freed slots go to the highest waiting priority first, FIFO
        within one; a priority that gets no slot ages (:data:`AGING_RULE`).
        ``hold`` (default: ``require_approval``) stores it ``awaiting approval``:
        nothing is sent before :meth:`approve`. ``max_units`` caps what it may
        spend (reserved plus charged); past it the batch pauses (``paused: budget``)
        until :meth:`resume`. A request identical to one that already succeeded
        (same endpoint, same body but for klingmon's ids) is stored ``cancelled``
        with ``repeat_of`` naming that task, and never sent, unless
        ``allow_repeats``. ``accounts``: the accounts it may be sent on (None: the
        default); with several, each task goes to the one with the most free slots
        in its pool when it is sent, and stays there.
        """
        _check_priority(priority)
        named = self._check_accounts(accounts)
        now = self.clock.now()
        deadline = to_ms(now + timeout) if timeout is not None else None
        tasks = [new_task(r, deadline_ms=deadline) for r in requests]
        if not tasks:
            raise UsageError("a batch needs at least one task")
        if max_units is not None and not max_units >= 0:
            raise UsageError("max_units must be a number of units >= 0")
        tasks = self._repeats(tasks, allow=allow_repeats)
        quote = self._quoter.quote([t for t in tasks if t.repeat_of is None])
        tasks = self._quoter.priced(tasks, self._quoter.book())
        held = self.require_approval if hold is None else hold
        row = self.store.tasks.create_batch(
            batch,
            tasks,
            to_ms(now),
            priority=priority,
            state=BatchState.AWAITING_APPROVAL.value if held else None,
            max_units=max_units,
            quote=quote.to_json(),
            accounts=named,
        )
        if self._engine is not None:
            self._engine.wake()
        return row

    def set_priority(self, batch: str | int, priority: int) -> BatchRow:
        """Change a batch's priority while it runs (each queued task gets an event).

        The next claim orders by it: a raised batch takes the next freed slots.
        """
        _check_priority(priority)
        row = self._batch(batch)
        self.store.tasks.set_priority(
            row.id, priority, to_ms(self.clock.now()), by="library"
        )
        return self._woken(row.id)

    def _repeats(self, tasks: list[NewTask], *, allow: bool) -> list[NewTask]:
        hashed = [
            dataclasses.replace(t, request_hash=request_hash(t.endpoint, t.body))
            for t in tasks
        ]
        if allow:
            return hashed
        found = self.store.tasks.succeeded_with([t.request_hash or "" for t in hashed])
        return [
            dataclasses.replace(t, repeat_of=found[t.request_hash])
            if t.request_hash in found
            else t
            for t in hashed
        ]

    def approve(self, batch: str | int) -> BatchRow:
        """Let a batch stored ``awaiting approval`` be sent."""
        row = self._batch(batch)
        if row.state != BatchState.AWAITING_APPROVAL:
            raise UsageError(f"batch {row.name} is not awaiting approval")
        self.store.spend.release(row.id, state=BatchState.AWAITING_APPROVAL)
        return self._woken(row.id)

    def resume(self, batch: str | int, *, max_units: float | None = None) -> BatchRow:
        """Let a batch paused by its budget go on, with a new cap if given."""
        row = self._batch(batch)
        if max_units is not None and not max_units >= 0:
            raise UsageError("max_units must be a number of units >= 0")
        if row.state == BatchState.AWAITING_APPROVAL:
            raise UsageError(
                f"batch {row.name} is awaiting approval: `klingmon approve` it"
            )
        if max_units is not None:
            self.store.spend.set_cap(row.id, max_units)
        self.store.spend.release(row.id, state=BatchState.PAUSED_BUDGET)
        return self._woken(row.id)

    def _batch(self, batch: str | int) -> BatchRow:
        row = self.store.tasks.batch(batch)
        if row is None:
            raise NotFoundError(f"no batch {batch!r}")
        return row

    def _woken(self, batch_id: int) -> BatchRow:
        self.store.fleet.notify()
        if self._engine is not None:
            self._engine.wake()
        return self._batch(batch_id)

    async def track(
        self,
        endpoint: str,
        task_ids: Sequence[str],
        *,
        batch: str | None = None,
        account: str | None = None,
    ) -> BatchRow:
        """Adopt tasks created elsewhere, so they are watched and collected too.

        ``account``: the account they were created on (None: the default); they
        are looked up and watched with its client.

        Tasks already in the store are skipped; when all are, nothing is stored and
        :class:`NothingToDoError` names them.
        """
        fresh = [t for t in dict.fromkeys(task_ids) if self.store.tasks.task(t) is None]
        if not fresh:
            raise NothingToDoError(f"Already tracked: {self.tracked_where(task_ids)}")
        named = self._check_accounts([account] if account else None)
        client = self._account_client(account)
        if generation_of(endpoint) is Generation.V2026:
            # One batched GET /tasks; an id Kling does not know is simply missing.
            found = await client.fetch(endpoint, fresh)
            missing = [t for t in fresh if t not in found]
            if missing:
                raise TaskNotFoundError(
                    f"Kling has no task {', '.join(missing)}; nothing was stored",
                    status_code=404,
                )
            return self._adopt(endpoint, [found[t] for t in fresh], batch, named)
        tasks = await asyncio.gather(*(client.get(endpoint, t) for t in fresh))
        return self._adopt(endpoint, [snapshot(t) for t in tasks], batch, named)

    def tracked_where(self, task_ids: Sequence[str]) -> str:
        """``task 123 in batch launch, ...`` for the ids the store already has."""
        where = []
        for ref in task_ids:
            row = self.store.tasks.task(ref)
            if row is not None:
                owner = self.store.tasks.batch(row.batch_id)
                where.append(f"task {ref} in batch {owner.name if owner else '?'}")
        return ", ".join(where)

    async def import_recent(
        self,
        endpoint: str,
        *,
        pages: int = 1,
        batch: str | None = None,
        since_ms: int | None = None,
        account: str | None = None,
    ) -> BatchRow:
        """Adopt the account's recent tasks of one endpoint that are not stored yet.

        The new generation has no list per path: ``POST /tasks`` is paged by cursor
        over a time window (``since_ms`` to now; Kling's default is 30 days) for the
        endpoint's product type, and what it finds is stored under ``endpoint``.
        ``account``: whose recent tasks (None: the default account's).
        """
        named = self._check_accounts([account] if account else None)
        client = self._account_client(account)
        if generation_of(endpoint) is Generation.V2026:
            query = TaskQuery(
                product_types=(product_type_of(endpoint),),
                since_ms=since_ms,
                until_ms=to_ms(self.clock.now()) if since_ms is not None else None,
                limit=500,
            )
            wire = await client.query_all(query, max_pages=pages)
            found = [snapshot(t) for t in wire]
        else:
            found = []
            for page in range(1, pages + 1):
                chunk = await client.list(endpoint, page=page, page_size=500)
                found.extend(snapshot(t) for t in chunk)
                if len(chunk) < 500:
                    break
        fresh = [t for t in found if self.store.tasks.task(t.task_id) is None]
        if not fresh:
            raise NothingToDoError(
                f"Nothing new: every recent {endpoint} task is already tracked"
            )
        return self._adopt(endpoint, fresh, batch, named)

    def _adopt(
        self,
        endpoint: str,
        tasks: Sequence[Snapshot],
        batch: str | None,
        accounts: Sequence[str] | None = None,
    ) -> BatchRow:
        path = resolve_endpoint(endpoint)
        rows = [
            NewTask(
                endpoint=path,
                body={},
                external_task_id=t.external_task_id or f"adopted-{t.task_id}",
                task=t,
            )
            for t in tasks
        ]
        return self.store.tasks.create_batch(
            batch, rows, to_ms(self.clock.now()), accounts=accounts
        )

    def retry(
        self,
        batch: str | int,
        *,
        name: str | None = None,
        skip_moderated: bool = False,
    ) -> BatchRow:
        """Resubmit the failed and rejected tasks as new tasks linked to the old.

        ``skip_moderated`` leaves out those Kling refused for their content: sent
        again unchanged, they fail the same way.
        """
        return retry_batch(
            self.store,
            batch,
            to_ms(self.clock.now()),
            name=name,
            skip_moderated=skip_moderated,
        )

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = Engine(
                self.store,
                self.client,
                clients=self._clients,
                settings=self.settings,
                hooks=self.hooks,
                clock=self.clock,
                account=self.account,
            )
        return self._engine

    async def run(
        self,
        *,
        batch: str | int | None = None,
        forever: bool = False,
        others: bool = False,
    ) -> None:
        """Submit and watch until ``batch`` (or everything) is done, or ``stop()``.

        Given ``batch``, only its tasks are sent unless ``others``: a stored batch
        nobody asked to run is never paid for by the run of another.
        """
        batch_id = None if batch is None else self._batch(batch).id
        await self.engine().run(
            until_done=batch_id,
            forever=forever,
            scope=None if others else batch_id,
        )

    def stop(self) -> None:
        if self._engine is not None:
            self._engine.stop()

    def done(self, batch: str | int) -> bool:
        row = self.store.tasks.batch(batch)
        if row is None:
            return False
        counts = self.store.tasks.count_by_status(row.id)
        return all(status in TERMINAL for status, n in counts.items() if n)

    async def close_clients(self) -> None:
        """Close the Kling clients: the one given, and every account's built."""
        if self._client is not None:
            await self._client.aclose()
        if self._clients is not None:
            await self._clients.aclose()

    async def aclose(self) -> None:
        await self.close_clients()
        self.store.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
