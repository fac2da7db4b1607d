"""What a task is expected to cost, in units: shipped, configured, then learned.

A price is kept per :data:`PriceKey` (endpoint path, model, mode or resolution,
duration, audio). The prior is the shipped table (the legacy billing page,
reference §8.4; an UNCONFIRMED plausible table for the new generation), which
``klingmon.toml``'s ``[prices]`` overrides; every finished task's real charge then
teaches the book (the store keeps the sums, so every worker and receiver adds to the
same figures). An image task's key is per image: ``n`` multiplies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from klingmon.api import ModelPath, model_path, resolve_endpoint

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "SHIPPED",
    "Learned",
    "PriceBook",
    "PriceKey",
    "PriceSource",
    "Priced",
    "parse_price_key",
    "price_key",
    "shipped_units",
]

#: (endpoint path, model, mode or resolution, duration, ``audio`` or ``""``).
PriceKey = tuple[str, str, str, str, str]


class PriceSource(StrEnum):
    """Where an expected price comes from."""

    LEARNED = "learned"
    #: The shipped table, or ``[prices]`` in ``klingmon.toml``.
    SHIPPED = "shipped"
    UNKNOWN = "unknown"


# Units per clip (reference §8.4): std5, std10, pro5, pro10.
_LEGACY: dict[str, tuple[float, float, float, float]] = {
    "kling-v1": (1, 2, 3.5, 7),
    "kling-v1-5": (2, 4, 3.5, 7),
    "kling-v1-6": (2, 4, 3.5, 7),
    "kling-v2-master": (10, 20, 10, 20),
    "kling-v2-1-master": (10, 20, 10, 20),
}
#: New generation, units per 5 s of 720p video: UNCONFIRMED (1080p: x 5/3).
_NEW_VIDEO = {
    "kling-2.5-turbo": 1.5,
    "kling-2.6": 1.5,
    "kling-3.0-turbo": 1.5,
    "kling-3.0": 2.0,
    "kling-3.0-omni": 3.0,
    "kling-o1": 3.0,
}
_NEW_IMAGE_FAMILIES = frozenset({"image-generation", "omni-image", "image-editing"})
_NEW_AUDIO_FAMILIES = frozenset({"text-to-audio", "video-to-audio", "sound-effects"})
#: The shipped table as data, for ``klingmon quote --explain`` and the docs.
SHIPPED = {"legacy": _LEGACY, "new_video": _NEW_VIDEO}


def _settings(body: Mapping[str, Any]) -> Mapping[str, Any]:
    settings = body.get("settings")
    return settings if isinstance(settings, dict) else {}


def _count(body: Mapping[str, Any]) -> int:
    n = body.get("n", _settings(body).get("n", 1))
    return n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 9 else 1


def price_key(endpoint: str, body: Mapping[str, Any]) -> tuple[PriceKey, int]:
    """The key a create's price is kept under, and how many items it makes."""
    path, parts = _path(endpoint)
    settings = _settings(body)
    if parts is not None:
        quality = str(settings.get("resolution") or body.get("mode") or "720p")
        duration = str(settings.get("duration", body.get("duration", 5)))
        audio = settings.get("audio") == "native" or body.get("sound") == "on"
        key = (path, parts.model, quality, duration, "audio" if audio else "")
    else:
        model = str(body.get("model_name") or "kling-v1")
        mode = str(body.get("mode") or "std")
        duration = str(body.get("duration") or "5")
        audio = body.get("sound") == "on"
        key = (path, model, mode, duration, "audio" if audio else "")
    if _is_image(path, parts.family if parts is not None else ""):
        key = (path, key[1], "", "", "")  # an image has no mode, length or sound
    return key, _count(body)


@lru_cache(maxsize=1024)
def _path(endpoint: str) -> tuple[str, ModelPath | None]:
    """The path and model of an endpoint (a batch names a handful, row after row)."""
    path = resolve_endpoint(endpoint)
    return path, model_path(path)


def _is_image(path: str, family: str) -> bool:
    return path.startswith("/v1/images/") or family in _NEW_IMAGE_FAMILIES


def shipped_units(key: PriceKey) -> float | None:
    """The shipped table's units for one item of ``key``; None when it has none."""
    path, model, quality, duration, audio = key
    if audio:
        return None  # Kling documents no price for sound: learned or configured only
    parts = model_path(path)
    if parts is not None:
        return _shipped_new(parts.family, model, quality, duration)
    if path.startswith("/v1/images/"):
        return 0.25
    if path.endswith("/lip-sync") or path.startswith("/v1/audio/"):
        return 0.5
    return _shipped_legacy_video(path, model, quality, duration)


def _shipped_legacy_video(
    path: str, model: str, quality: str, duration: str
) -> float | None:
    table = _LEGACY.get(model)
    if table is None:
        return None
    std5, std10, pro5, pro10 = table
    if path.endswith("/video-extend"):
        return 1.0 if model == "kling-v1" else std5 if std5 <= 2 else 3.5
    if duration not in {"5", "10"}:
        return None
    ten = duration == "10"
    pro = quality == "pro"
    return float((pro10 if ten else pro5) if pro else (std10 if ten else std5))


def _shipped_new(family: str, model: str, quality: str, duration: str) -> float | None:
    if family in _NEW_IMAGE_FAMILIES:
        return 0.25
    if family in _NEW_AUDIO_FAMILIES:
        return 0.5
    base = _NEW_VIDEO.get(model)
    if base is None or quality not in {"720p", "1080p"}:
        return None
    try:
        seconds = float(duration)
    except ValueError:
        return None
    units = base * seconds / 5 * (5 / 3 if quality == "1080p" else 1.0)
    return round(units, 2)


def parse_price_key(text: str) -> tuple[str, ...]:
    """A ``[prices]`` key: ``endpoint|model|mode|duration|audio``, any tail left off.

    ``text2video|kling-v2-6`` prices every mode and duration of that model alike; a
    longer key wins over a shorter one. The endpoint may be a short legacy name.
    """
    parts = [p.strip() for p in text.split("|")]
    if not parts[0] or len(parts) > 5 or any(not p for p in parts[1:4]):
        raise ValueError(
            f"price key {text!r}: expected endpoint|model|mode|duration|audio"
        )
    return (resolve_endpoint(parts[0]), *parts[1:])


@dataclass(frozen=True, slots=True)
class Learned:
    """The charges seen for one key: sums, so that workers add to the same row."""

    #: Tasks whose charge in units was seen (aged: halved past a few hundred).
    count: float = 0.0
    units: float = 0.0
    #: Tasks charged in cash, and the cash; ``currency`` as Kling last said.
    cash_count: float = 0.0
    cash: float = 0.0
    currency: str | None = None

    @property
    def units_each(self) -> float | None:
        return self.units / self.count if self.count > 0 else None

    @property
    def cash_each(self) -> float | None:
        return self.cash / self.cash_count if self.cash_count > 0 else None


@dataclass(frozen=True, slots=True)
class Priced:
    """The expected price of one item of a key."""

    units: float | None
    source: PriceSource
    #: Cash per item, when charges in cash were seen.
    cash: float | None = None
    currency: str | None = None


class PriceBook:
    """Learned charges over the shipped table and the configured overrides."""

    def __init__(
        self,
        learned: Mapping[PriceKey, Learned] | None = None,
        overrides: Mapping[tuple[str, ...], float] | None = None,
    ) -> None:
        self._learned = dict(learned or {})
        self._overrides = dict(overrides or {})
        self._cache: dict[PriceKey, Priced] = {}

    def price(self, key: PriceKey) -> Priced:
        """What one item of ``key`` is expected to cost, and on what ground."""
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._price(key)
        return cached

    def _price(self, key: PriceKey) -> Priced:
        seen = self._learned.get(key)
        if seen is not None and (seen.units_each is not None or seen.cash_each):
            return Priced(
                seen.units_each, PriceSource.LEARNED, seen.cash_each, seen.currency
            )
        for n in range(len(key), 0, -1):
            value = self._overrides.get(key[:n])
            if value is not None:
                return Priced(value, PriceSource.SHIPPED)
        shipped = shipped_units(key)
        if shipped is None:
            return Priced(None, PriceSource.UNKNOWN)
        return Priced(shipped, PriceSource.SHIPPED)

    def learned(self) -> dict[PriceKey, Learned]:
        return dict(self._learned)
