"""Simulated tasks: a plan drawn at creation, and the wire object at any instant.

A task's whole life (when it starts processing, when and how it ends) is drawn once
from the seeded RNG when it is created; its status at a given time is then a pure
function of the clock, so virtual clocks and lazy reads agree with the callbacks.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from klingmon._clock import to_ms
from klingmon.sim._json import dumps
from klingmon.sim._prices import PriceTable, has_audio, scaled

if TYPE_CHECKING:
    import random

__all__ = [
    "KNOWN_MODELS",
    "SimTask",
    "draw_plan",
    "new_video_ids",
    "price",
]

KNOWN_MODELS = frozenset(
    {
        "kling-v1",
        "kling-v1-5",
        "kling-v1-6",
        "kling-v2",
        "kling-v2-new",
        "kling-v2-master",
        "kling-v2-1",
        "kling-v2-1-master",
        "kling-v2-5-turbo",
        "kling-v2-6",
        "kling-v3",
        "kling-v3-omni",
        "kling-video-o1",
        "kling-image-o1",
        "kolors-virtual-try-on-v1",
        "kolors-virtual-try-on-v1-5",
    }
)

_FAILURES_VIDEO = (
    "Internal generation error",
    "Failure to pass the risk control system, please modify the content and retry",
    "Internal generation error",
)
_FAILURES_IMAGE = (*_FAILURES_VIDEO, "Image pixel is invalid")
_IMAGE_INPUT = {"image", "image_tail", "human_image", "cloth_image"}

# Units per clip, official billing page (reference §8.4): std5, std10, pro5, pro10.
_UNITS: dict[str, tuple[float, float, float, float]] = {
    "kling-v1": (1, 2, 3.5, 7),
    "kling-v1-5": (2, 4, 3.5, 7),
    "kling-v1-6": (2, 4, 3.5, 7),
    "kling-v2-master": (10, 20, 10, 20),
    "kling-v2-1-master": (10, 20, 10, 20),
}
_DEFAULT_UNITS = (1.5, 3, 2.5, 5)  # newer models: UNCONFIRMED, a plausible middle
_IMAGE_UNIT = 0.25  # per image: UNCONFIRMED


_BUILT_IN = PriceTable()


def _fmt(units: float) -> str:
    return f"{units:g}"


def price(
    endpoint: str,
    body: dict[str, Any],
    parent_model: str | None,
    table: PriceTable = _BUILT_IN,
) -> str:
    """``final_unit_deduction`` of a task that succeeded: the table's override for
    its path or model, else reference §8.4."""
    model = str(body.get("model_name") or parent_model or "kling-v1")
    audio = has_audio(body)
    base = table.override(endpoint, model)
    if base is not None:
        seconds = _seconds(body.get("duration"))
        count = _count(body) if endpoint.startswith("/v1/images/") else 1
        pro = body.get("mode") == "pro"
        return _fmt(scaled(table, base, seconds, pro=pro, audio=audio, count=count))
    units = _built_in(endpoint, body, model)
    return _fmt(round(units * (table.audio_factor if audio else 1.0), 4))


def _seconds(value: object) -> float:
    try:
        seconds = float(str(value))
    except ValueError:
        return 5.0
    return seconds if 0 < seconds < 3600 else 5.0


def _built_in(endpoint: str, body: dict[str, Any], model: str) -> float:
    if endpoint.startswith("/v1/images/"):
        return _IMAGE_UNIT * _count(body)
    if endpoint.endswith("/lip-sync") or endpoint.startswith("/v1/audio/"):
        return 0.5
    std5, std10, pro5, pro10 = _UNITS.get(model, _DEFAULT_UNITS)
    if endpoint.endswith("/video-extend"):
        return 1 if model == "kling-v1" else std5 if std5 <= 2 else 3.5
    pro = body.get("mode") == "pro"
    ten = body.get("duration") == "10"
    return (pro10 if ten else pro5) if pro else (std10 if ten else std5)


def _count(body: dict[str, Any]) -> int:
    n = body.get("n", 1)
    return n if isinstance(n, int) and 1 <= n <= 9 else 1


@dataclass(slots=True)
class SimTask:
    """One task and its predetermined life (times in clock seconds)."""

    task_id: str
    endpoint: str
    body: dict[str, Any]
    base_url: str
    created: float
    processing_at: float
    #: None for a task that stays processing forever.
    ends_at: float | None
    outcome: str  # "succeed" | "failed" | "stuck"
    failure_msg: str
    video_ids: list[str]
    order_key: float
    parent_video: dict[str, str] | None = None
    parent_model: str | None = None
    slots: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    #: ``legacy`` or ``new`` (model in the path, :mod:`klingmon.sim._newgen`).
    generation: str = "legacy"
    #: New generation: the path's family and model, the output kind and the files
    #: served once it succeeded.
    family: str = ""
    model: str = ""
    kind: str = "video"
    files: tuple[str, ...] = ()
    #: Its concurrency pool, either generation: ``kling-v1/video``, ``kling-3.0/image``.
    pool: str = ""
    #: What it is charged once it succeeds (``final_unit_deduction``), by the
    #: account's price table; set when it is created.
    units: str = "0"
    #: The view of the state it was last built in (and its JSON text, once asked
    #: for): it changes only at the task's few transitions, and list pages and
    #: polls repeat it by the hundred.
    _shown: tuple[tuple[str, int], dict[str, Any], str | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def options(self) -> dict[str, Any]:
        """Where the new generation takes ``external_task_id`` and ``callback_url``."""
        if self.generation == "legacy":
            return self.body
        options = self.body.get("options")
        return options if isinstance(options, dict) else {}

    @property
    def external_task_id(self) -> str | None:
        value = self.options.get("external_task_id")
        return str(value) if value is not None else None

    @property
    def callback_url(self) -> str | None:
        value = self.options.get("callback_url")
        return str(value) if value else None

    @property
    def is_image(self) -> bool:
        return self.endpoint.startswith("/v1/images/")

    @property
    def is_audio(self) -> bool:
        return self.endpoint.startswith("/v1/audio/")

    def file_names(self) -> tuple[str, ...]:
        """The names served under ``/media/<task_id>/`` once it succeeded."""
        if self.generation != "legacy":
            return self.files
        if self.is_audio:
            return ("0.mp3", "0.wav")
        return tuple(f"{i}.mp4" for i in range(len(self.video_ids)))

    def _audio(self) -> dict[str, str]:
        """One ``task_result.audios`` item of a legacy audio task (reference S10)."""
        mp3, wav = self.urls()
        seconds = "10.0" if self.body.get("duration") in {"10", 10} else "5.0"
        return {
            "id": self.video_ids[0],
            "url_mp3": mp3,
            "url_wav": wav,
            "duration_mp3": seconds,
            "duration_wav": seconds,
        }

    def transitions(self, now: float) -> list[tuple[str, int]]:
        """The status changes that have happened by ``now``, with epoch-ms times."""
        out = [("submitted", to_ms(self.created))]
        if now >= self.processing_at:
            out.append(("processing", to_ms(self.processing_at)))
        if self.ends_at is not None and now >= self.ends_at:
            out.append((self.outcome, to_ms(self.ends_at)))
        return out

    def status(self, now: float) -> str:
        return self.transitions(now)[-1][0]

    def in_flight(self, now: float) -> bool:
        return self.ends_at is None or now < self.ends_at

    def urls(self) -> list[str]:
        """The legacy result URLs (unsigned), one per served file."""
        return [
            f"{self.base_url}/media/{self.task_id}/{name}" for name in self.file_names()
        ]

    def duration(self) -> str:
        if self.endpoint.endswith("/video-extend") and self.parent_video:
            parent = float(self.parent_video.get("duration") or "5.1")
            return f"{parent + 4.5:.1f}"
        return "10.1" if self.body.get("duration") == "10" else "5.1"

    def task_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {}
        if self.external_task_id is not None:
            info["external_task_id"] = self.external_task_id
        if self.parent_video is not None:
            info["parent_video"] = dict(self.parent_video)
        return info

    def created_view(self) -> dict[str, Any]:
        """The ``data`` of the create answer (reference §6, live 2026-03 sample)."""
        ms = to_ms(self.created)
        return {
            "task_id": self.task_id,
            "task_status": "submitted",
            "task_info": self.task_info(),
            "created_at": ms,
            "updated_at": ms,
        }

    def view_json(self, now: float) -> str:
        """:meth:`view` as JSON text, encoded once per state."""
        state, data, text = self._show(now)
        if text is None:
            text = dumps(data).decode()
            self._shown = (state, data, text)
        return text

    def view(self, now: float) -> dict[str, Any]:
        """The task object of query, list and callback bodies as of ``now``.

        Callers serialise it and must not change it: it is shared until the task's
        next transition.
        """
        return self._show(now)[1]

    def _show(self, now: float) -> tuple[tuple[str, int], dict[str, Any], str | None]:
        state = self.transitions(now)[-1]
        if self._shown is not None and self._shown[0] == state:
            return self._shown
        status, updated = state
        result: dict[str, Any] = {}
        data: dict[str, Any] = {
            "task_id": self.task_id,
            "task_status": status,
            "task_status_msg": self.failure_msg if status == "failed" else "",
            "task_info": self.task_info(),
            "task_result": result,
            "created_at": to_ms(self.created),
            "updated_at": updated,
            "watermark_info": {"enabled": False},
        }
        if status == "succeed":
            if self.is_image:
                result["images"] = [
                    {"index": i, "url": url} for i, url in enumerate(self.urls())
                ]
            elif self.is_audio:
                result["audios"] = [self._audio()]
            else:
                result["videos"] = [
                    {"id": vid, "url": url, "duration": self.duration()}
                    for vid, url in zip(self.video_ids, self.urls(), strict=True)
                ]
            data["final_unit_deduction"] = self.units
        elif status == "failed":
            data["final_unit_deduction"] = "0"
        self._shown = (state, data, None)
        return self._shown


def _length_factor(duration: object) -> float:
    """How much longer a clip of ``duration`` seconds takes than a 5 s one: 1.6 for
    10 s (as before), in proportion between 3 and 15 s (the 3.0 family's range)."""
    try:
        seconds = float(str(duration))
    except ValueError:
        return 1.0
    if not 3 <= seconds <= 15:
        return 1.0
    return 1.0 + 0.12 * (seconds - 5)


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(sigma * rng.gauss(0.0, 1.0))


def draw_plan(
    rng: random.Random,
    *,
    endpoint: str,
    body: dict[str, Any],
    created: float,
    time_scale: float,
    fail_rate: float,
    stuck_rate: float,
    image: bool | None = None,
) -> dict[str, Any]:
    """Durations and outcome of a new task; always consumes the same draws.

    ``image`` (None: guessed from a legacy path and body) picks failure messages.
    """
    submitted = rng.uniform(0.5, 30.0)
    median = 180.0 if body.get("mode") == "pro" else 90.0
    median *= _length_factor(body.get("duration"))
    processing = max(10.0, _lognormal(rng, median, 0.45))
    if rng.random() < 0.03:  # the long tail: a few tasks take many times longer
        processing *= rng.uniform(3.0, 12.0)
    roll = rng.random()
    fail_point = rng.uniform(0.02, 1.0)
    images = (
        bool(_IMAGE_INPUT & set(body)) or "/images/" in endpoint
        if image is None
        else image
    )
    messages = _FAILURES_IMAGE if images else _FAILURES_VIDEO
    message = messages[rng.randrange(len(messages))]
    order_key = rng.random()
    if roll < stuck_rate:
        outcome = "stuck"
    elif roll < stuck_rate + fail_rate:
        outcome, processing = "failed", processing * fail_point
    else:
        outcome = "succeed"
    processing_at = created + submitted / time_scale
    ends_at = None if outcome == "stuck" else processing_at + processing / time_scale
    return {
        "processing_at": processing_at,
        "ends_at": ends_at,
        "outcome": outcome,
        "failure_msg": message,
        "order_key": order_key,
    }


def new_video_ids(rng: random.Random, count: int) -> list[str]:
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]
