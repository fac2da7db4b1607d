"""The column names a CSV may carry: the known fields of both API generations.

Requests pass unknown fields through to Kling (newer models take fields we never
saw), so a typo such as ``colour`` would reach Kling silently. A CSV header is
written by hand, though, and a column nobody documented is far more likely a
mistake than a new field: so the reader checks column names against this list
itself. A JSON Lines row may still carry any body as is.
"""

from __future__ import annotations

from klingmon.api import (
    Image2VideoRequest,
    Text2VideoRequest,
    VideoExtendRequest,
)

__all__ = ["INT_COLUMNS", "JSON_COLUMNS", "KNOWN_COLUMNS"]

#: Cells parsed as JSON (objects and lists).
JSON_COLUMNS = frozenset(
    {
        "camera_control",
        "dynamic_masks",
        "watermark_info",
        "settings",
        "options",
        "contents",
        "voice_list",
        "element_list",
        "multi_prompt",
        "image_list",
        "input",
    }
)
#: Cells parsed as whole numbers (an image task's count).
INT_COLUMNS = frozenset({"n"})

#: Documented fields of the legacy endpoints klingmon does not model one by one and
#: of the new generation's bodies (reference: kling-api.md §4, kling-api-2026.md).
_DOCUMENTED = frozenset(
    {
        "endpoint",
        # legacy, newer models and other endpoints
        "sound",
        "voice_list",
        "multi_shot",
        "multi_prompt",
        "element_list",
        "input",
        "effect_scene",
        "image_list",
        "n",
        "human_image",
        "cloth_image",
        "audio_id",
        "sound_file",
        "image_reference",
        "image_fidelity",
        "human_fidelity",
        "resolution",
        # new generation: top level, and the flat names of settings/options
        "contents",
        "settings",
        "options",
        "audio",
        "duration",
        "aspect_ratio",
    }
)

#: Every column name a CSV row may have.
KNOWN_COLUMNS = frozenset(
    {
        *Text2VideoRequest.model_fields,
        *Image2VideoRequest.model_fields,
        *VideoExtendRequest.model_fields,
        *_DOCUMENTED,
    }
)
