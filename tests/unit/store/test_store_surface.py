"""The store's shape: a small front, small repositories, each with its Protocol."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest

from klingmon.store import (
    CallbackFlow,
    CallbackFlowPort,
    DownloadQueue,
    DownloadQueuePort,
    Fleet,
    FleetPort,
    Meta,
    MetaPort,
    Outbox,
    OutboxPort,
    Reports,
    ReportsPort,
    Spending,
    SpendingPort,
    Store,
    TaskQueue,
    TaskQueuePort,
    WatchList,
    WatchListPort,
)

REPOSITORIES = {
    "tasks": (TaskQueue, TaskQueuePort),
    "watch": (WatchList, WatchListPort),
    "outbox": (Outbox, OutboxPort),
    "downloads": (DownloadQueue, DownloadQueuePort),
    "fleet": (Fleet, FleetPort),
    "reports": (Reports, ReportsPort),
    "meta": (Meta, MetaPort),
    "flow": (CallbackFlow, CallbackFlowPort),
    "spend": (Spending, SpendingPort),
}
_SCRIPTS = Path(__file__).parents[3] / "scripts" / "dev"


def _public(cls: type) -> set[str]:
    return {n for n in vars(cls) if not n.startswith("_")}


def test_the_store_itself_opens_closes_and_holds_repositories(tmp_path: Path):
    """Store's own surface is a handful of names; the rest is its repositories."""
    assert _public(Store) == {"open", "url", "dialect", "transaction", "close"}
    with Store.open(str(tmp_path / "k.db")) as store:
        held = {n for n in vars(store) if not n.startswith("_")}
        assert held == set(REPOSITORIES)
        for name, (cls, _) in REPOSITORIES.items():
            assert type(getattr(store, name)) is cls


@pytest.mark.parametrize("name", sorted(REPOSITORIES))
def test_no_repository_has_more_than_twenty_public_methods(name: str):
    """A repository stays small enough to read in one sitting."""
    cls, _ = REPOSITORIES[name]
    assert 1 <= len(_public(cls)) <= 20


@pytest.mark.parametrize("name", sorted(REPOSITORIES))
def test_each_protocol_names_its_repository_s_methods_with_their_signatures(name: str):
    """A consumer typed against a port can be handed the repository, and back."""
    cls, port = REPOSITORIES[name]
    assert _public(port) == _public(cls)
    for method in _public(cls):
        if isinstance(getattr(cls, method), property):
            continue
        assert inspect.signature(getattr(port, method)) == inspect.signature(
            getattr(cls, method)
        ), method


def test_no_repository_branches_on_the_database_it_runs_on():
    """What SQLite and PostgreSQL do differently is asked of the dialect helper."""
    for cls, _ in REPOSITORIES.values():
        source = inspect.getsource(sys.modules[cls.__module__])
        assert "_pg" not in source, cls.__name__
        assert "dialect.name ==" not in source, cls.__name__


def _rewrite():  # the caller-rewriting script lives outside the package
    sys.path.insert(0, str(_SCRIPTS))
    try:
        import store_calls  # noqa: PLC0415
    finally:
        sys.path.remove(str(_SCRIPTS))
    return store_calls


def test_the_call_rewriter_maps_every_old_method_to_a_repository_method():
    """Each old Store method in the mapping lands on a method its repository has."""
    mapping = _rewrite().MAPPING
    # ``spend``, ``tasks.succeeded_with`` and the pools' ``tasks.pool_use`` and
    # ``reports.pool_figures`` came after the split: no old Store method maps to them.
    before = {k: v for k, v in REPOSITORIES.items() if k != "spend"}
    later = {"succeeded_with", "pool_use", "pool_figures"}
    assert len(mapping) == sum(len(_public(c) - later) for c, _ in before.values())
    for repo, new in mapping.values():
        assert new in _public(REPOSITORIES[repo][0]), (repo, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("store.claim_due(o)", "store.watch.claim_due(o)"),
        ("self._store.meta_get(k)", "self._store.meta.get(k)"),
        ("monitor.store.tasks(1)", "monitor.store.tasks.tasks(1)"),
        ("to_thread(self.store.apply, obs)", "to_thread(self.store.watch.apply, obs)"),
        ("context.store().revisions()", "context.store().meta.revisions()"),
        ("stores[n].claim_queued(x)", "stores[n].tasks.claim_queued(x)"),
        ("(store\n    .apply(x))", "(store\n    .watch.apply(x))"),
        ("Submitter(store.tasks, store.watch)", "Submitter(store.tasks, store.watch)"),
        ("restore.task(1)", "restore.task(1)"),
        ("server.sim.counters()", "server.sim.counters()"),
    ],
)
def test_the_call_rewriter_rewrites_old_calls_once(old: str, new: str):
    """Old calls point at their repository; a second run changes nothing."""
    rewrite = _rewrite().rewrite
    assert rewrite(old) == new
    assert rewrite(new) == new
