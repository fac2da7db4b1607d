"""A task's endpoint is a path, and the path tells the API generation.

Kling's own rule: the model version in the path (``/text-to-video/kling-3.0``) is
the new generation; a model named in the body's ``model_name`` on a ``/v1/...`` path
is the legacy one. Nothing here lists the new models, so a model Kling adds tomorrow
works without a klingmon release.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from klingmon.errors import RequestValidationError

__all__ = [
    "ENDPOINTS",
    "Generation",
    "ModelPath",
    "generation_of",
    "model_path",
    "product_type_of",
    "resolve_endpoint",
]

#: Short endpoint names and their legacy paths.
ENDPOINTS: dict[str, str] = {
    "text2video": "/v1/videos/text2video",
    "image2video": "/v1/videos/image2video",
    "video-extend": "/v1/videos/video-extend",
}

_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_NEW_PATH = re.compile(rf"^/({_SEGMENT})/({_SEGMENT})$")
_LEGACY_PATH = re.compile(r"^/v1(/[A-Za-z0-9._-]+)+$")
_NEW_SEGMENTS = re.compile(rf"^(/{_SEGMENT})+$")
#: Paths of the new generation that are no ``/<family>/<model>`` create.
_NEW_SERVICE_FAMILIES = frozenset({"tasks", "account"})


class Generation(StrEnum):
    """The two API generations Kling runs side by side."""

    #: ``/v1/...`` paths, ``model_name`` in the body, ``task_id``/``task_status``.
    LEGACY = "legacy"
    #: ``/<family>/<model>`` paths, API keys only, ``id``/``status``/``outputs[]``.
    V2026 = "2026"


@dataclass(frozen=True, slots=True)
class ModelPath:
    """A new-generation create path split into its two parts."""

    #: ``text-to-video``, ``image-to-video``, ``omni-video``, ``motion-control``, …
    family: str
    #: ``kling-3.0``, ``kling-3.0-omni``, ``kling-o1``, …
    model: str

    @property
    def path(self) -> str:
        return f"/{self.family}/{self.model}"


def resolve_endpoint(endpoint: str) -> str:
    """The path for a short legacy name (``text2video``) or a path given as is."""
    value = endpoint.strip()
    if value.startswith("/"):
        return value.rstrip("/")
    return ENDPOINTS.get(value, f"/v1/videos/{value}")


def model_path(endpoint: str) -> ModelPath | None:
    """The family and model of a new-generation path; None for any other path."""
    match = _NEW_PATH.match(resolve_endpoint(endpoint))
    if match is None or match.group(1) == "v1":
        return None
    family, model = match.groups()
    if family in _NEW_SERVICE_FAMILIES:
        return None
    return ModelPath(family, model)


def generation_of(endpoint: str) -> Generation:
    """The generation an endpoint belongs to; a malformed path is refused.

    ``/v1/...`` (or a short name) is legacy; ``/<family>/<model>`` is the new one,
    and so are its query and account paths (``/tasks``, ``/account/costs``).
    """
    path = resolve_endpoint(endpoint)
    if _LEGACY_PATH.match(path):
        return Generation.LEGACY
    first = path.strip("/").split("/", 1)[0]
    if model_path(path) is not None or (
        first in _NEW_SERVICE_FAMILIES and _NEW_SEGMENTS.match(path)
    ):
        return Generation.V2026
    raise RequestValidationError(
        f"endpoint {endpoint!r} is neither a legacy /v1/... path "
        "nor a /<family>/<model> path"
    )


#: New-generation families whose tasks are images (``product_type`` ``image``).
_IMAGE_FAMILIES = frozenset({"image-generation", "omni-image", "image-editing"})


def product_type_of(endpoint: str) -> str:
    """The ``product_type`` filter of ``POST /tasks`` for a new-generation path.

    ``image`` for the image families, ``try_on`` for virtual try-on, else ``video``
    (a family Kling adds tomorrow is most likely a video one).
    """
    parts = model_path(endpoint)
    family = parts.family if parts is not None else ""
    if family == "virtual-try-on":
        return "try_on"
    return "image" if family in _IMAGE_FAMILIES else "video"
