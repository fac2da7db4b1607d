"""What each Kling model takes, as data: durations, audio, camera control, multi-shot.

Kling's documentation trails its models, and third parties fill the gaps. So the
table says where each entry comes from: an entry from Kling's own docs
(``documented``) may refuse a duration outside its list; anything else only warns,
because refusing a request Kling would accept loses the user a generation. A model
missing from the table is passed as is, with a warning that nothing was checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from klingmon.api._endpoints import Generation, generation_of, model_path

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "CAPABILITIES",
    "LEGACY_DEFAULT_MODEL",
    "Capability",
    "capability_warnings",
    "duration_refusal",
    "model_of",
]

#: The model a legacy body without ``model_name`` runs on (reference §4.1).
LEGACY_DEFAULT_MODEL = "kling-v1"

_FIVE_OR_TEN = frozenset({5, 10})
_THREE_TO_FIFTEEN = frozenset(range(3, 16))


@dataclass(frozen=True, slots=True)
class Capability:
    """What one model takes; None means nobody has said."""

    durations: frozenset[int] | None = None
    #: The durations come from Kling's own docs: others are refused, not warned.
    documented: bool = False
    audio: bool | None = None
    camera_control: bool | None = None
    multi_shot: bool | None = None


_V1 = Capability(_FIVE_OR_TEN, documented=True, audio=False, camera_control=True)
_V2 = Capability(_FIVE_OR_TEN, documented=True, audio=False, camera_control=False)
_V3 = Capability(_THREE_TO_FIFTEEN, audio=True, multi_shot=True)

#: Model name (legacy ``model_name`` or the new path's model segment) → capability.
CAPABILITIES: dict[str, Capability] = {
    # Legacy model names; the EN docs list 5 and 10 for all of these.
    "kling-v1": _V1,
    "kling-v1-5": _V2,
    "kling-v1-6": _V2,
    "kling-v2-master": _V2,
    "kling-v2-1": _V2,
    "kling-v2-1-master": _V2,
    "kling-v2-5-turbo": _V2,
    # CN docs only; durations beside 5 and 10 unconfirmed.
    "kling-v2-6": Capability(_FIVE_OR_TEN, audio=True, multi_shot=False),
    # Seen live; 3-15 s and multi-shot from third-party docs.
    "kling-v3": _V3,
    "kling-v3-omni": _V3,
    "kling-video-o1": Capability(),
    # New-generation models (the path's last segment), from the 2026 docs.
    "kling-2.6": Capability(_FIVE_OR_TEN, documented=True, audio=True),
    "kling-2.5-turbo": Capability(_FIVE_OR_TEN, audio=False),
    "kling-3.0": Capability(
        _THREE_TO_FIFTEEN, documented=True, audio=True, multi_shot=True
    ),
    "kling-3.0-turbo": Capability(
        _THREE_TO_FIFTEEN, documented=True, audio=True, multi_shot=True
    ),
    "kling-3.0-omni": Capability(
        _THREE_TO_FIFTEEN, documented=True, audio=True, multi_shot=True
    ),
    "kling-o1": Capability(),
}


def model_of(endpoint: str, body: Mapping[str, Any]) -> str:
    """The model a create runs on: the path's segment, or ``model_name`` (legacy)."""
    parts = model_path(endpoint)
    if parts is not None:
        return parts.model
    name = body.get("model_name")
    return name if isinstance(name, str) and name else LEGACY_DEFAULT_MODEL


def _seconds(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _settings(endpoint: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
    """Where the flat settings live: ``settings`` (new) or the body itself (legacy)."""
    if generation_of(endpoint) is Generation.V2026:
        inner = body.get("settings")
        return inner if isinstance(inner, dict) else {}
    return body


def duration_refusal(model: str, value: Any) -> str | None:
    """Why a duration is certainly refused for ``model``, or None.

    Only documented duration lists refuse; any other doubt is a warning.
    """
    capability = CAPABILITIES.get(model)
    seconds = _seconds(value)
    if capability is None or not capability.documented or capability.durations is None:
        return None
    if seconds is None or seconds not in capability.durations:
        return _should_be(sorted(capability.durations))
    return None


def _should_be(allowed: list[int]) -> str:
    """Pydantic's words for a choice (``Input should be '5' or '10'``)."""
    low, high = allowed[0], allowed[-1]
    if len(allowed) > 3 and allowed == list(range(low, high + 1)):
        return f"Input should be a whole number of seconds from '{low}' to '{high}'"
    quoted = [f"'{s}'" for s in allowed]
    if len(quoted) == 1:
        return f"Input should be {quoted[0]}"
    return f"Input should be {', '.join(quoted[:-1])} or {quoted[-1]}"


def capability_warnings(endpoint: str, body: Mapping[str, Any]) -> list[str]:
    """Everything about a create the table doubts, one sentence each.

    Never raises for a body it cannot judge: the doubt is a warning, and the request
    goes to Kling, which has the last word.
    """
    model = model_of(endpoint, body)
    capability = CAPABILITIES.get(model)
    if capability is None:
        return [f"model {model!r} is not in klingmon's capability table; not checked"]
    settings = _settings(endpoint, body)
    warnings: list[str] = []
    duration = settings.get("duration")
    seconds = _seconds(duration)
    durations = capability.durations
    if duration is not None and durations is not None and seconds not in durations:
        low, high = min(durations), max(durations)
        warnings.append(
            f"duration {duration!r} may not be taken by {model} ({low}..{high} s)"
        )
    audio = settings.get("audio", settings.get("sound"))
    if audio not in (None, "off", False) and capability.audio is False:
        warnings.append(f"{model} may not generate audio")
    if (
        settings.get("camera_control") is not None
        and capability.camera_control is False
    ):
        warnings.append(f"{model} may not take camera_control")
    if settings.get("multi_shot") and capability.multi_shot is False:
        warnings.append(f"{model} may not take multi_shot")
    if (
        generation_of(endpoint) is Generation.V2026
        and audio == "native"
        and settings.get("resolution", "720p") != "1080p"
    ):
        warnings.append("audio 'native' is documented to need resolution '1080p'")
    return warnings
