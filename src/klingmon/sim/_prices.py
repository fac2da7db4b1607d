"""What the simulated account charges a task that succeeds, in units: its own table.

The defaults are the legacy billing page (reference §8.4) and a plausible,
UNCONFIRMED table for the new generation. :class:`PriceTable` overrides them per
create path or model: units for a 5-s standard (720p) clip without audio, scaled by
duration, by ``pro_factor`` for ``mode: pro`` or 1080p, by ``audio_factor`` when the
clip has audio, and by ``n`` for image tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["PriceTable", "has_audio", "scaled"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceTable:
    """Overrides of the simulator's built-in prices (empty: the built-in table)."""

    #: Create path (``/v1/videos/text2video``, ``/text-to-video/kling-3.0``) or
    #: model (``kling-v1-6``, ``kling-3.0``) => units per 5-s std clip, no audio.
    units: Mapping[str, float] = field(default_factory=dict)
    pro_factor: float = 1.75
    #: Applied to every clip with audio (``sound: on``, ``settings.audio: native``),
    #: built-in prices included; 1 leaves them as they are.
    audio_factor: float = 1.0

    def __post_init__(self) -> None:
        if any(v < 0 for v in self.units.values()):
            raise ValueError("a price must be >= 0")
        if self.pro_factor <= 0 or self.audio_factor <= 0:
            raise ValueError("pro_factor and audio_factor must be positive")

    def override(self, path: str, model: str) -> float | None:
        """The configured per-clip units for ``path`` (first) or ``model``."""
        value = self.units.get(path)
        return self.units.get(model) if value is None else value


def has_audio(body: Mapping[str, Any]) -> bool:
    """Whether a create asks for a clip with sound (either generation's spelling)."""
    settings = body.get("settings")
    audio = settings.get("audio") if isinstance(settings, dict) else None
    return body.get("sound") == "on" or audio == "native"


def scaled(
    table: PriceTable,
    base: float,
    seconds: float,
    *,
    pro: bool,
    audio: bool,
    count: int = 1,
) -> float:
    """``base`` units (a 5-s std clip) scaled to ``seconds``, pro, audio, count."""
    units = base * seconds / 5 * (table.pro_factor if pro else 1.0) * count
    return round(units * (table.audio_factor if audio else 1.0), 4)
