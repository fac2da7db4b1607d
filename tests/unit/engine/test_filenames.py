"""File names from templates: filled in, and safe whatever a prompt holds."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from klingmon.downloads import DEFAULT_TEMPLATE, NameFields, render_name
from klingmon.downloads._filenames import check_template, safe_component, slug
from klingmon.errors import ConfigError


def _fields(**changes: object) -> NameFields:
    base: dict[str, object] = {
        "batch": "demo",
        "index": 7,
        "task_id": "8412345",
        "external_task_id": "km-1-7-abcd",
        "prompt": "A red fox runs through fresh snow",
        "endpoint": "/v1/videos/text2video",
        "model": "kling-v2-master",
        "mode": "std",
        "video_id": "v-1",
        "url": "https://cdn.klingai.com/x/y.mp4?sig=1",
    }
    base.update(changes)
    return NameFields(**base)  # type: ignore[arg-type]


def _is_safe(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    return (
        bool(parts)
        and not PurePosixPath(rel).is_absolute()
        and all(p not in {"", ".", ".."} and not p.startswith(".") for p in parts)
        and all(len(p) <= 120 for p in parts)
        and "\\" not in rel
        and "\x00" not in rel
    )


def test_default_template() -> None:
    """The default name is batch/index-slug-task_id.mp4."""
    assert render_name(DEFAULT_TEMPLATE, _fields()) == (
        "demo/0007-a-red-fox-runs-through-fresh-snow-8412345.mp4"
    )


def test_all_fields_fill_in() -> None:
    """Every documented field can be used."""
    template = "{endpoint}/{model}-{mode}/{external_task_id}-{video_id}-{kind}.{ext}"
    assert render_name(template, _fields()) == (
        "text2video/kling-v2-master-std/km-1-7-abcd-v-1-video.mp4"
    )


def test_traversal_prompt_stays_inside() -> None:
    """A prompt like ../../etc/passwd becomes a plain slug."""
    rel = render_name(DEFAULT_TEMPLATE, _fields(prompt="../../etc/passwd"))
    assert rel == "demo/0007-etc-passwd-8412345.mp4"
    assert _is_safe(rel)


def test_traversal_in_batch_and_template_parts() -> None:
    """Dots, slashes and backslashes in fields or templates cannot climb out."""
    rel = render_name(
        "../{batch}/../../{slug}.mp4", _fields(batch="../../..\\x", prompt="..")
    )
    assert _is_safe(rel)
    assert rel == "x/untitled.mp4"


def test_long_prompt_is_bounded() -> None:
    """A 2,000-character prompt gives a short name."""
    rel = render_name(DEFAULT_TEMPLATE, _fields(prompt="word " * 400))
    assert _is_safe(rel)
    assert len(rel) < 100


def test_second_file_and_images_get_their_own_names() -> None:
    """A task's second video gets -1; an image under a .mp4 template keeps .png."""
    assert render_name(DEFAULT_TEMPLATE, _fields(n=1)).endswith("8412345-1.mp4")
    image = render_name(
        DEFAULT_TEMPLATE, _fields(kind="image", url="https://cdn.klingai.com/a.png")
    )
    assert image.endswith("8412345.png")


def test_reserved_and_hidden_names() -> None:
    """Device names and leading dots are neutralised."""
    assert safe_component("CON.mp4") == "_CON.mp4"
    assert safe_component(".bashrc") == "bashrc"
    assert safe_component("..") == "_"
    assert slug("") == "untitled"
    assert slug("Ünïcödé ✨ Straße") == "unicode-strae"


def test_unknown_field_is_a_config_error() -> None:
    """A template naming an unknown field (or an attribute) is refused."""
    with pytest.raises(ConfigError, match="the fields are"):
        check_template("{prompt}.mp4")
    with pytest.raises(ConfigError):
        check_template("{batch.__class__}.mp4")
    with pytest.raises(ConfigError):
        check_template("{batch")


@given(prompt=st.text(max_size=3000), batch=st.text(min_size=1, max_size=300))
def test_any_prompt_and_batch_give_a_safe_name(prompt: str, batch: str) -> None:
    """Whatever text arrives, the name is relative, bounded and without ``..``."""
    rel = render_name(DEFAULT_TEMPLATE, _fields(prompt=prompt, batch=batch))
    assert _is_safe(rel)


@pytest.mark.parametrize(
    ("kind", "url", "fmt", "n", "name"),
    [
        ("audio", "https://cdn/x/0.mp3?Expires=1", "mp3", 0, "0001-a-heron-t1.mp3"),
        ("audio", "https://cdn/x/1.wav?Expires=1", "wav", 1, "0001-a-heron-t1-1.wav"),
        ("audio", "https://cdn/x/file", "wav", 1, "0001-a-heron-t1-1.wav"),
        ("audio", "https://cdn/x/file", None, 0, "0001-a-heron-t1.mp3"),
        ("voice", "https://cdn/x/0.mp3", None, 0, "0001-a-heron-t1-voice.mp3"),
        ("video-wm", "https://cdn/x/0-wm.mp4", None, 0, "0001-a-heron-t1-wm.mp4"),
        ("image-wm", "https://cdn/x/1-wm.png", None, 1, "0001-a-heron-t1-1-wm.png"),
        ("image", "https://cdn/x/0", None, 0, "0001-a-heron-t1.png"),
    ],
)
def test_every_kind_gets_its_extension_and_a_name_of_its_own(kind, url, fmt, n, name):
    fields = NameFields(
        batch="b",
        index=1,
        task_id="t1",
        prompt="a heron",
        kind=kind,
        n=n,
        url=url,
        format=fmt,
    )
    assert render_name(DEFAULT_TEMPLATE, fields) == f"b/{name}"
