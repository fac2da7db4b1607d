"""Files on disk or behind fsspec: hashing, safe local paths, remote writes.

fsspec is optional (the ``storage`` extra); it is imported only for a remote
destination, with a clear hint when it is missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from klingmon.downloads._rules import DownloadRefusedError
from klingmon.errors import ConfigError

if TYPE_CHECKING:
    from klingmon.store import BatchRow, DownloadRow, TaskRow

__all__ = [
    "check_file",
    "feed_file",
    "hash_file",
    "head",
    "local_dest",
    "local_path",
    "move_leftovers",
    "remote_exists",
    "remote_hash",
    "remote_write",
    "settled",
    "sidecar_record",
    "upload",
]


def hash_file(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of a local file."""
    digest = hashlib.sha256()
    return feed_file(path, digest), digest.hexdigest()


def feed_file(path: Path, digest: Any) -> int:
    """Feed a local file to ``digest`` (a part file resumed); returns its size."""
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return size


def head(path: Path, nbytes: int = 16) -> bytes:
    """A file's first bytes (to tell its format)."""
    with path.open("rb") as f:
        return f.read(nbytes)


def local_path(root: str, rel: str) -> Path:
    base = Path(root).expanduser().absolute()
    path = (base / rel).absolute()
    if os.path.commonpath([base, path]) != str(base):  # pragma: no cover - sanitised
        raise DownloadRefusedError(f"refused a file name outside {base}")
    return path


def local_dest(root: str, rel: str) -> str:
    return str(local_path(root.removeprefix("file://"), rel))


def settled(local: Path, dest: str, remote: bool) -> tuple[int, str] | None:
    """Size and hash of a file already in place (uploading a staged one), or None."""
    if not remote:
        return hash_file(local) if local.exists() else None
    if not remote_exists(dest):
        if not local.exists():
            return None
        upload(local, dest)  # staged completely, never sent
    return hash_file(local) if local.exists() else remote_hash(dest)


def _fsspec() -> Any:
    try:
        fsspec = importlib.import_module("fsspec")
    except ImportError as exc:
        raise ConfigError(
            "a remote download destination needs fsspec: "
            "pip install 'klingmon[storage]'"
        ) from exc
    return fsspec


def remote_exists(url: str) -> bool:
    fs, path = _fsspec().core.url_to_fs(url)
    return bool(fs.exists(path))


def remote_hash(url: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with _fsspec().open(url, "rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def upload(local: Path, url: str) -> None:
    fs, path = _fsspec().core.url_to_fs(url)
    parent = path.rsplit("/", 1)[0]
    with contextlib.suppress(Exception):  # object stores have no directories
        fs.makedirs(parent, exist_ok=True)
    fs.put_file(str(local), path)


def remote_write(url: str, text: str) -> None:
    with _fsspec().open(url, "w", encoding="utf-8") as f:
        f.write(text + "\n")


def check_file(dest: str, sha256: str | None, *, remote: bool) -> str:
    """``ok``, ``missing`` or ``changed``: a downloaded file against its stored hash."""
    try:
        if remote:
            if not remote_exists(dest):
                return "missing"
            _, found = remote_hash(dest)
        else:
            path = Path(dest)
            if not path.is_file():
                return "missing"
            _, found = hash_file(path)
    except FileNotFoundError:
        return "missing"
    return "ok" if found == sha256 else "changed"


def move_leftovers(old: str, new: str) -> None:
    """Move what an earlier run left at ``old`` (part, file, sidecar) to ``new``.

    Nothing is overwritten: a file already at ``new`` stays, the old one too.
    """
    for suffix in (".part", "", ".json"):
        source, target = Path(old + suffix), Path(new + suffix)
        if source.is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(source, target)


def sidecar_record(
    row: DownloadRow,
    task: TaskRow | None,
    batch: BatchRow | None,
    dest: str,
    *,
    size: int,
    sha256: str,
) -> dict[str, Any]:
    """What ``<file>.json`` says: request, ids, timings, source URL and hash."""
    record: dict[str, Any] = {
        "file": dest,
        "kind": row.kind,
        "index": row.idx,
        "size": size,
        "sha256": sha256,
        "source_url": row.url,
        "expires_ms": row.expires_ms,
        "batch": None if batch is None else batch.name,
    }
    if task is not None:
        record |= {
            "task_id": task.task_id,
            "external_task_id": task.external_task_id,
            "endpoint": task.endpoint,
            "request": task.body,  # the request body: never credentials
            "status": task.status.value,
            "units": task.units,
            "timings_ms": {
                "created": task.created_ms,
                "submitted": task.submitted_ms,
                "processing": task.processing_ms,
                "finished": task.finished_ms,
                "kling_created": task.kling_created_ms,
                "kling_updated": task.kling_updated_ms,
            },
            "result": task.result,
        }
    return record
