"""Rewrite calls of the old one-namespace ``Store`` to its repositories.

``store.claim_due(...)`` becomes ``store.watch.claim_due(...)``,
``self._store.meta_get(k)`` becomes ``self._store.meta.get(k)``, and so on for
every method :data:`MAPPING` names, in the files given on the command line::

    python scripts/dev/store_calls.py src/klingmon/engine/*.py

What is rewritten: ``<receiver>.<old method>`` where the receiver is the
identifier ``store`` or one ending in ``_store`` (``store``, ``self.store``,
``self._store``, ``monitor.store``, ``receiver_store``), a call of one
(``context.store()``) or an item of ``stores`` (``stores[n]``); with or without
a call after it (``asyncio.to_thread(self.store.claim_due, ...)``), across a line
break before the dot. Running it again changes nothing: ``store.tasks.x`` (the
repository) is never taken for the old ``store.tasks(...)``, which is why that one
method is only rewritten where it is called. This file itself is skipped.

Not rewritten (fix by hand): a store under another name (``s.apply(...)``,
``fresh.task(...)``), ``getattr(store, "workers")`` and other names in strings,
``Store.apply`` on the class, a bare ``store.tasks`` passed as a function
(``to_thread(store.tasks, 1)``: it reads as the repository), and fakes or
protocols that define the old methods.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

#: Old ``Store`` method -> (repository attribute, new name).
MAPPING: dict[str, tuple[str, str]] = {
    # -- the flow repository: wake-ups here, callbacks flowing, changes since a mark
    "in_memory": ("flow", "in_memory"),
    "listen_here": ("flow", "listen_here"),
    "note_callbacks": ("flow", "note_callbacks"),
    "callbacks_last_ms": ("flow", "callbacks_last_ms"),
    "last_event_id": ("flow", "last_event_id"),
    "changes_since": ("flow", "changes_since"),
    # -- the tasks repository: batches and the task queue
    "create_batch": ("tasks", "create_batch"),
    "batches": ("tasks", "batches"),
    "batch": ("tasks", "batch"),
    "task": ("tasks", "task"),
    "tasks": ("tasks", "tasks"),
    "task_ids_of_batch": ("tasks", "task_ids_of_batch"),
    "count_by_status": ("tasks", "count_by_status"),
    "has_tasks": ("tasks", "has_tasks"),
    "match_tasks": ("tasks", "match_tasks"),
    "claim_queued": ("tasks", "claim_queued"),
    "claim_submissions": ("tasks", "claim_submissions"),
    "mark_submitting": ("tasks", "mark_submitting"),
    "mark_submitted": ("tasks", "mark_submitted"),
    "requeue": ("tasks", "requeue"),
    "reject": ("tasks", "reject"),
    "cancel_tasks": ("tasks", "cancel_tasks"),
    "set_priority": ("tasks", "set_priority"),
    "lock_tasks": ("tasks", "lock_tasks"),
    # -- the watch repository: tasks at Kling
    "claim_due": ("watch", "claim_due"),
    "due_endpoints": ("watch", "due_endpoints"),
    "active": ("watch", "active"),
    "watched": ("watch", "watched"),
    "next_due_ms": ("watch", "next_due_ms"),
    "apply": ("watch", "apply"),
    "schedule": ("watch", "schedule"),
    "pull_in": ("watch", "pull_in"),
    "flag": ("watch", "flag"),
    "note": ("watch", "note"),
    # -- the outbox repository: events and their delivery
    "events": ("outbox", "events"),
    "claim_outbox": ("outbox", "claim_outbox"),
    "delivered": ("outbox", "delivered"),
    "failed": ("outbox", "failed"),
    "outbox_backlog": ("outbox", "outbox_backlog"),
    "record_delivery": ("outbox", "record_delivery"),
    # -- the downloads repository: owed files
    "confirm_downloads": ("downloads", "confirm_downloads"),
    "ensure_downloads": ("downloads", "ensure_downloads"),
    "claim_downloads": ("downloads", "claim_downloads"),
    "set_download_dest": ("downloads", "set_download_dest"),
    "download_done": ("downloads", "download_done"),
    "download_failed": ("downloads", "download_failed"),
    "requeue_downloads": ("downloads", "requeue_downloads"),
    "download_row": ("downloads", "download_row"),
    "download_rows": ("downloads", "download_rows"),
    "download_counts": ("downloads", "download_counts"),
    "next_download_ms": ("downloads", "next_download_ms"),
    "files_owed": ("downloads", "files_owed"),
    # -- the fleet repository: workers, lock leases, wake-ups, task leases
    "heartbeat": ("fleet", "heartbeat"),
    "worker_stopped": ("fleet", "worker_stopped"),
    "workers": ("fleet", "workers"),
    "acquire_lock": ("fleet", "acquire_lock"),
    "notify": ("fleet", "notify"),
    "listen": ("fleet", "listen"),
    "release": ("fleet", "release"),
    "lease_counts": ("fleet", "lease_counts"),
    "lease_owners": ("fleet", "lease_owners"),
    "live_lease_owners": ("fleet", "live_lease_owners"),
    # -- the reports repository: figures and counters
    "report": ("reports", "report"),
    "batch_summaries": ("reports", "batch_summaries"),
    "change_mark": ("reports", "change_mark"),
    "slots_in_use": ("reports", "slots_in_use"),
    "slots_by_batch": ("reports", "slots_by_batch"),
    "processing_seconds": ("reports", "processing_seconds"),
    "counters": ("reports", "counters"),
    "counter_totals": ("reports", "counter_totals"),
    "bump": ("reports", "bump"),
    # -- the meta repository: key/value facts, statistics, revisions; the
    # meta_* methods lose their prefix (meta.get, not meta.meta_get)
    "meta_get": ("meta", "get"),
    "meta_set": ("meta", "set"),
    "meta_setdefault": ("meta", "setdefault"),
    "load_stats": ("meta", "load_stats"),
    "save_stats": ("meta", "save_stats"),
    "revisions": ("meta", "revisions"),
}

# A receiver: the identifier ``store`` or one ending in ``_store`` (so not
# ``restore``), maybe called or indexed once: store, self._store, receiver_store,
# context.store(), stores[n].
_RECEIVER = r"(?<!\w)(?:\w*_)?store(?:\(\)|s\[[^\[\]\n]*\])?"
#: Old methods that are also a repository's name: only a call of one is the method,
#: since ``store.tasks`` alone is the repository now.
_AMBIGUOUS = {"tasks"}
_METHODS = "|".join(
    rf"{name}(?=\s*\()" if name in _AMBIGUOUS else name
    for name in sorted(MAPPING, key=len, reverse=True)
)
_PATTERN = re.compile(
    rf"(?P<receiver>{_RECEIVER})(?P<dot>\s*\.)(?P<method>{_METHODS})"
    # Not the start of a longer name, nor a repository already (store.tasks.x).
    r"(?!\w)(?!\s*\.\s*[A-Za-z_])"
)


def rewrite(text: str) -> str:
    """``text`` with every old store call pointed at its repository."""

    def repl(m: re.Match[str]) -> str:
        repo, name = MAPPING[m["method"]]
        return f"{m['receiver']}{m['dot']}{repo}.{name}"

    return _PATTERN.sub(repl, text)


def main(argv: list[str]) -> int:
    """Rewrite each file in ``argv`` in place; print the ones that changed."""
    for arg in argv:
        path = Path(arg)
        if path.resolve() == Path(__file__).resolve():
            continue  # its docstring and mapping name the old calls on purpose
        text = path.read_text(encoding="utf-8")
        new = rewrite(text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
