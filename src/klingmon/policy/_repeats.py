"""A request's identity: its endpoint and canonical body, so that a repeat of one
that already succeeded is found before it is paid for again."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from klingmon.api import resolve_endpoint

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["request_hash"]

#: klingmon's own fields: they differ between two sends of the same request.
_OURS = frozenset({"external_task_id", "callback_url"})


def _canonical(body: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in body.items() if k not in _OURS}
    options = out.get("options")
    if isinstance(options, dict):
        kept = {k: v for k, v in options.items() if k not in _OURS}
        if kept:
            out["options"] = kept
        else:
            out.pop("options")
    return out


def request_hash(endpoint: str, body: Mapping[str, Any]) -> str:
    """SHA-256 of the endpoint path and the body, keys sorted, ids left out."""
    text = json.dumps(
        [resolve_endpoint(endpoint), _canonical(body)],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()
