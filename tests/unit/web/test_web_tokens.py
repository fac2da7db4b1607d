"""Callback-URL tokens: HMAC of the external_task_id, checked in constant time."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from klingmon.web import callback_token, callback_url_builder, token_matches

SECRET = b"s" * 32


def test_token_matches_its_own_task():
    """A task's token passes for that task."""
    token = callback_token(SECRET, "km-1-1-abcd")
    assert token_matches(SECRET, "km-1-1-abcd", token)


def test_token_of_another_task_is_refused():
    """A token minted for one task does not open another."""
    token = callback_token(SECRET, "km-1-1-abcd")
    assert not token_matches(SECRET, "km-1-2-ef01", token)


def test_token_under_another_secret_is_refused():
    """The same external id under another server secret gives a different token."""
    token = callback_token(b"t" * 32, "km-1-1-abcd")
    assert not token_matches(SECRET, "km-1-1-abcd", token)


def test_hex_spelling_is_accepted():
    """The hex spelling of the same HMAC is accepted too."""
    raw = base64.urlsafe_b64decode(callback_token(SECRET, "x") + "=")
    assert token_matches(SECRET, "x", raw.hex())


def test_url_builder_joins_base_path_and_token():
    """The callback URL is <public>/callbacks/kling/<token>, one slash between."""
    build = callback_url_builder("https://hooks.example.com/km/", SECRET)
    url = build("km-1-1-abcd")
    assert url == (
        "https://hooks.example.com/km/callbacks/kling/"
        + callback_token(SECRET, "km-1-1-abcd")
    )


@given(st.text(max_size=300))
def test_arbitrary_tokens_never_raise_and_never_pass(token):
    """Garbage tokens are refused without an exception."""
    assert not token_matches(SECRET, "km-1-1-abcd", token)
