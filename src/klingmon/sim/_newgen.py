"""The new API generation: its paths, create checks, units and task object.

The model version sits in the path (``/text-to-video/kling-3.0``); what a task
produces and which concurrency pool it takes follow from the family (the first
segment). Everything here is a pure function of the task and the clock.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from klingmon._clock import to_ms
from klingmon.sim._prices import PriceTable, has_audio, scaled

if TYPE_CHECKING:
    from klingmon.sim._ledger import Charge
    from klingmon.sim._tasks import SimTask

__all__ = [
    "NEW_STATUS",
    "content_type",
    "created_view",
    "family_of",
    "file_names",
    "output_kind",
    "pack_type",
    "plan_body",
    "product_type",
    "task_object",
    "units",
    "validate_new",
]

#: The internal (legacy) status => the new generation's word for it.
NEW_STATUS = {
    "submitted": "submitted",
    "processing": "processing",
    "succeed": "succeeded",
    "failed": "failed",
}
_IMAGE_FAMILIES = frozenset({"image-generation", "omni-image", "image-editing"})
_KINDS = {
    "virtual-try-on": "image",
    "text-to-audio": "audio",
    "video-to-audio": "audio",
    "sound-effects": "audio",
    "custom-voice": "voice",
    "custom-element": "element",
}
_PROMPT_LIMIT = 2500
_ASPECTS = frozenset({"16:9", "9:16", "1:1"})
_RESOLUTIONS = frozenset({"720p", "1080p"})
# Units per 5 s of 720p video: UNCONFIRMED, plausible figures for the simulator.
_VIDEO_UNITS = {
    "kling-2.5-turbo": 1.5,
    "kling-2.6": 1.5,
    "kling-3.0-turbo": 1.5,
    "kling-3.0": 2.0,
    "kling-3.0-omni": 3.0,
    "kling-o1": 3.0,
}
_OTHER_UNITS = {"image": 0.25, "audio": 0.5, "voice": 1.0, "element": 0.0}
_BUILT_IN = PriceTable()
#: A result URL's ``Expires``: 30 days after creation, as Kling's CDN signs them.
URL_LIFETIME = 30 * 86400
_CONTENT_TYPES = {
    "mp4": "video/mp4",
    "png": "image/png",
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
}


def family_of(path: str) -> tuple[str, str] | None:
    """``(family, model)`` of a ``/<family>/<model>`` path, or None."""
    parts = path.strip("/").split("/")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


def output_kind(family: str) -> str:
    """``video``, ``image``, ``audio``, ``voice`` or ``element``."""
    return "image" if family in _IMAGE_FAMILIES else _KINDS.get(family, "video")


def pack_type(family: str) -> str:
    """The concurrency pool's pack type: ``image`` or ``video``."""
    return "image" if output_kind(family) == "image" else "video"


def product_type(family: str) -> str:
    """The ``product_type`` filter value of ``POST /tasks``."""
    if family == "virtual-try-on":
        return "try_on"
    return "image" if output_kind(family) == "image" else "video"


def _settings(body: dict[str, Any]) -> dict[str, Any]:
    settings = body.get("settings")
    return settings if isinstance(settings, dict) else {}


def image_count(body: dict[str, Any]) -> int:
    """The ``n`` of an image task (top level, or in ``settings``); 1 if absent."""
    n = body.get("n", _settings(body).get("n", 1))
    return n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 9 else 1


def _duration(body: dict[str, Any]) -> int:
    value = _settings(body).get("duration", 5)
    return value if isinstance(value, int) and not isinstance(value, bool) else 5


def plan_body(body: dict[str, Any]) -> dict[str, Any]:
    """The legacy-shaped fields :func:`draw_plan` reads, so durations match legacy."""
    hd = _settings(body).get("resolution") == "1080p"
    return {"mode": "pro" if hd else "std", "duration": str(_duration(body))}


def units(
    family: str, model: str, body: dict[str, Any], table: PriceTable = _BUILT_IN
) -> float:
    """What a task that succeeds costs, in units: the table's override for its path
    or model, else a simple, UNCONFIRMED built-in table."""
    kind = output_kind(family)
    audio = has_audio(body)
    base = table.override(f"/{family}/{model}", model)
    if base is not None:
        count = image_count(body) if kind == "image" else 1
        seconds = _duration(body) if kind == "video" else 5
        hd = _settings(body).get("resolution") == "1080p"
        return scaled(table, base, seconds, pro=hd, audio=audio, count=count)
    if kind == "image":
        return _OTHER_UNITS["image"] * image_count(body)
    if kind != "video":
        return _OTHER_UNITS[kind]
    built_in = _VIDEO_UNITS.get(model, 2.0) * _duration(body) / 5
    if _settings(body).get("resolution") == "1080p":
        built_in *= 5 / 3
    return round(built_in * (table.audio_factor if audio else 1.0), 2)


def _check_text(body: dict[str, Any], family: str) -> str | None:
    prompt = body.get("prompt")
    if family == "text-to-video" and (not isinstance(prompt, str) or not prompt):
        return "prompt is required"
    for key in ("prompt", "negative_prompt"):
        value = body.get(key)
        if value is not None and (
            not isinstance(value, str) or len(value) > _PROMPT_LIMIT
        ):
            return f"{key} is invalid: at most {_PROMPT_LIMIT} characters"
    return None


def _check_duration(model: str, settings: dict[str, Any]) -> str | None:
    if "duration" not in settings:
        return None
    value = settings["duration"]
    allowed = range(3, 16) if "-3." in model or model.endswith("o1") else (5, 10)
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        return f"settings.duration value '{value}' is invalid"
    return None


def _check_settings(model: str, body: dict[str, Any]) -> str | None:
    if "settings" in body and not isinstance(body["settings"], dict):
        return "settings is invalid: must be an object"
    settings = _settings(body)
    checks = (
        ("audio", frozenset({"native", "off"})),
        ("resolution", _RESOLUTIONS),
        ("aspect_ratio", _ASPECTS),
    )
    for key, allowed in checks:
        if key in settings and settings[key] not in allowed:
            return f"settings.{key} value '{settings[key]}' is invalid"
    if settings.get("audio") == "native" and settings.get("resolution") != "1080p":
        return "settings.audio native requires settings.resolution 1080p"
    return _check_duration(model, settings)


def _check_options(body: dict[str, Any]) -> str | None:
    options = body.get("options", {})
    if not isinstance(options, dict):
        return "options is invalid: must be an object"
    for key in ("external_task_id", "callback_url"):
        if key in options and not isinstance(options[key], str):
            return f"options.{key} value is invalid: must be a string"
    return None


def validate_new(family: str, model: str, body: dict[str, Any]) -> str | None:
    """The 1201 message for a new-generation create body, or None if accepted.

    Unknown fields pass, as on Kling.
    """
    message = (
        _check_text(body, family)
        or _check_settings(model, body)
        or _check_options(body)
    )
    if message is None and output_kind(family) == "image":
        n = body.get("n", _settings(body).get("n", 1))
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 9:
            message = f"n value '{n}' is invalid"
    return message


def file_names(kind: str, count: int) -> tuple[str, ...]:
    """The result files a succeeded task of this kind serves under ``/media``."""
    if kind == "video":
        return ("0.mp4", "0-wm.mp4")
    if kind == "image":
        return tuple(f"{i}{wm}.png" for i in range(count) for wm in ("", "-wm"))
    if kind == "audio":
        return ("0.mp3", "0.wav")
    return ("0.mp3",) if kind == "voice" else ("0.png",)


def content_type(name: str) -> str:
    return _CONTENT_TYPES.get(name.rpartition(".")[2], "application/octet-stream")


def signed_url(task: SimTask, name: str, key: bytes) -> str:
    """A CDN-looking URL: an ``Expires`` 30 days out and an HMAC ``Signature``."""
    expires = int(task.created) + URL_LIFETIME
    path = f"/media/{task.task_id}/{name}"
    signature = hmac.new(key, f"{path}:{expires}".encode(), hashlib.sha256)
    return f"{task.base_url}{path}?Expires={expires}&Signature={signature.hexdigest()}"


def _outputs(task: SimTask, key: bytes) -> list[dict[str, Any]]:
    url = {name: signed_url(task, name, key) for name in task.files}
    kind, body = task.kind, task.body
    ident = task.video_ids[0] if task.video_ids else task.task_id
    if kind == "video":
        seconds = f"{_duration(body) + 0.1:.1f}"
        return [
            {
                "type": "video",
                "id": ident,
                "url": url["0.mp4"],
                "watermark_url": url["0-wm.mp4"],
                "duration": seconds,
            }
        ]
    if kind == "image":
        return _images(task, url)
    if kind == "audio":
        seconds = f"{_duration(body):.1f}"
        return [
            {
                "type": "audio",
                "id": ident,
                "mp3_url": url["0.mp3"],
                "wav_url": url["0.wav"],
                "mp3_duration": seconds,
                "wav_duration": seconds,
            }
        ]
    owned = {"owned_by": "account", "status": "succeeded"}
    if kind == "voice":
        name = str(body.get("name") or f"voice-{ident}")
        return [
            {"type": "voice", "id": ident, "name": name, "url": url["0.mp3"], **owned}
        ]
    return [
        {
            "type": "element",
            "id": ident,
            "name": str(body.get("name") or f"element-{ident}"),
            "description": str(body.get("description") or ""),
            "element_type": str(body.get("element_type") or "character"),
            "references": [{"url": url["0.png"]}],
            **owned,
            "tags": list(body.get("tags") or []),
        }
    ]


def _images(task: SimTask, url: dict[str, str]) -> list[dict[str, Any]]:
    count = len(task.files) // 2
    out: list[dict[str, Any]] = []
    for i in range(count):
        item = {
            "type": "image",
            "url": url[f"{i}.png"],
            "watermark_url": url[f"{i}-wm.png"],
        }
        if count > 1:
            item["group_id"] = task.task_id
        out.append(item)
    return out


def created_view(task: SimTask) -> dict[str, Any]:
    """``data`` of a create answer; like the live one, without ``external_id``."""
    ms = to_ms(task.created)
    return {
        "id": task.task_id,
        "status": "submitted",
        "message": "",
        "create_time": ms,
        "update_time": ms,
    }


def task_object(
    task: SimTask, now: float, charge: Charge | None, key: bytes
) -> dict[str, Any]:
    """The new generation's task object as of ``now`` (queries and callbacks)."""
    status, updated = task.transitions(now)[-1]
    data: dict[str, Any] = {
        "id": task.task_id,
        "status": NEW_STATUS[status],
        "message": task.failure_msg if status == "failed" else "",
        "create_time": to_ms(task.created),
        "update_time": updated,
        "outputs": _outputs(task, key) if status == "succeed" else [],
    }
    if task.external_task_id is not None:
        data["external_id"] = task.external_task_id
    if status == "succeed" and charge is not None:
        data["billing"] = [charge.billing()]
    return data
