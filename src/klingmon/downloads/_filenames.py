"""Where a result file lands: a name template, filled in and made safe (pure).

A prompt is user text and ends up in a file name, so every field is reduced to a
safe slug of letters, digits, ``.``, ``_`` and ``-``, every path component is
checked (no empty, ``.``, ``..``, hidden or reserved names; bounded length), and the
final path is checked again to lie under the destination. No prompt, id or
template can write outside it.
"""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from klingmon.errors import ConfigError

__all__ = [
    "DEFAULT_TEMPLATE",
    "FIELDS",
    "NameFields",
    "check_template",
    "render_name",
    "safe_component",
    "slug",
]

DEFAULT_TEMPLATE = "{batch}/{index:04d}-{slug}-{task_id}.mp4"
#: Every field a template may use.
FIELDS = frozenset(
    {
        "batch",
        "index",
        "n",
        "task_id",
        "external_task_id",
        "slug",
        "endpoint",
        "model",
        "mode",
        "video_id",
        "kind",
        "ext",
    }
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DASHES = re.compile(r"-{2,}")
_MAX_COMPONENT = 120
_MAX_SLUG = 48
# Names Windows refuses whatever the extension; harmless to avoid everywhere.
_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"}
    | {f"com{i}" for i in range(10)}
    | {f"lpt{i}" for i in range(10)}
)
_VIDEO_EXT = frozenset({".mp4", ".mov", ".webm"})
_KNOWN_EXT = _VIDEO_EXT | {
    ".png",
    ".jpg",
    ".jpeg",
    ".webp",
    ".mp3",
    ".wav",
    ".m4a",
    ".aac",
    ".ogg",
    ".flac",
}
#: A file's extension when its URL names none: by its kind (``-wm`` stripped).
_DEFAULT_EXT = {"image": ".png", "audio": ".mp3", "voice": ".mp3"}
#: The mark of a watermarked variant, in its kind and before its extension.
_WATERMARK = "-wm"


def slug(text: str | None, *, limit: int = _MAX_SLUG) -> str:
    """Lowercase ASCII words joined by ``-``; ``untitled`` when nothing is left."""
    folded = unicodedata.normalize("NFKD", text or "")
    ascii_text = folded.encode("ascii", "ignore").decode().lower()
    words = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")
    cut = words[:limit].rstrip("-")
    return cut or "untitled"


def safe_component(text: str) -> str:
    """One path component that cannot escape, hide or collide with a device name."""
    cleaned = _DASHES.sub("-", _UNSAFE.sub("-", text)).strip(".- ")
    if len(cleaned) > _MAX_COMPONENT:
        _, dot, ext = cleaned.rpartition(".")
        keep = f".{ext}" if dot and 0 < len(ext) <= 8 else ""
        cleaned = cleaned[: _MAX_COMPONENT - len(keep)].rstrip(".-") + keep
    if not cleaned:
        return "_"
    if cleaned.split(".")[0].lower() in _RESERVED:
        cleaned = f"_{cleaned}"
    return cleaned


def check_template(template: str) -> str:
    """The template, or ConfigError naming a field it may not use."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"bad file name template {template!r}: {exc}") from exc
    for _, name, _, _ in parsed:
        if name is None:
            continue
        root = re.split(r"[.\[]", name, maxsplit=1)[0]
        if root not in FIELDS or root != name:
            known = ", ".join(sorted(FIELDS))
            raise ConfigError(
                f"file name template uses {{{name}}}; the fields are: {known}"
            )
    if not template.strip():
        raise ConfigError("the file name template is empty")
    return template


@dataclass(frozen=True, slots=True, kw_only=True)
class NameFields:
    """The facts about one result file a name can be built from."""

    batch: str
    index: int
    task_id: str
    external_task_id: str = ""
    prompt: str | None = None
    endpoint: str = ""
    model: str | None = None
    mode: str | None = None
    video_id: str | None = None
    kind: str = "video"
    #: The file's position among its task's results of its kind.
    n: int = 0
    url: str = ""
    #: The item's ``format`` (``mp3``, ``wav`` for audio), when the URL names none.
    format: str | None = None

    def values(self) -> dict[str, Any]:
        ext = _extension(self.url, self.kind, self.format)
        return {
            "batch": safe_component(self.batch),
            "index": self.index,
            "n": self.n,
            "task_id": safe_component(self.task_id),
            "external_task_id": safe_component(self.external_task_id),
            "slug": slug(self.prompt),
            "endpoint": safe_component(self.endpoint.rstrip("/").rsplit("/", 1)[-1]),
            "model": safe_component(self.model or "default"),
            "mode": safe_component(self.mode or "default"),
            "video_id": safe_component(self.video_id or str(self.n)),
            "kind": self.kind,
            "ext": ext.lstrip("."),
        }


def _extension(url: str, kind: str, fmt: str | None = None) -> str:
    """The URL's own media extension, else the item's ``format``, else the kind's."""
    suffix = PurePosixPath(urlsplit(url).path).suffix.lower()
    if suffix in _KNOWN_EXT:
        return suffix
    if fmt and f".{fmt.lower()}" in _KNOWN_EXT:
        return f".{fmt.lower()}"
    return _DEFAULT_EXT.get(kind.removesuffix(_WATERMARK), ".mp4")


def render_name(template: str, fields: NameFields) -> str:
    """A relative POSIX path under the destination, safe whatever the fields hold.

    An image, audio or voice file under a ``.mp4`` template gets its own extension
    (``.png``, ``.mp3``, ``.wav`` ...), a voice ``-voice`` and a watermarked variant
    ``-wm`` (unless the template uses ``{kind}``); a task's second and later files
    of a kind get ``-<n>`` before the extension unless the template uses ``{n}`` or
    ``{video_id}``, so that no two files share a name.
    """
    check_template(template)
    values = fields.values()
    try:
        text = template.format(**values)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        msg = f"cannot fill file name template {template!r}: {exc}"
        raise ConfigError(msg) from exc
    parts = [safe_component(p) for p in re.split(r"[/\\]+", text) if p not in {"", "."}]
    parts = [p for p in parts if p not in {"..", "_"}] or ["result"]
    name = PurePosixPath(parts[-1])
    ext = _extension(fields.url, fields.kind, fields.format)
    base = fields.kind.removesuffix(_WATERMARK)
    if base != "video" and name.suffix.lower() in _VIDEO_EXT:
        name = name.with_suffix(ext)
    elif not name.suffix:
        name = name.with_name(name.name + ext)
    unique = "{n" in template or "{video_id" in template
    if fields.n > 0 and not unique:
        name = name.with_name(f"{name.stem}-{fields.n}{name.suffix}")
    if "{kind" not in template and base == "voice":  # beside an audio's .mp3
        name = name.with_name(f"{name.stem}-voice{name.suffix}")
    if fields.kind.endswith(_WATERMARK) and "{kind" not in template:
        name = name.with_name(f"{name.stem}{_WATERMARK}{name.suffix}")
    parts[-1] = safe_component(name.name)
    return "/".join(parts)
