"""The web side: Kling callback receiver, JSON API, dashboard, health, ``/metrics``."""

from __future__ import annotations

from klingmon.callback_tokens import (
    CALLBACK_PATH,
    callback_token,
    callback_url_builder,
    server_secret,
    token_matches,
)
from klingmon.web._app import create_app
from klingmon.web._dashboard import Dashboard
from klingmon.web._hosts import HostPolicy, url_host
from klingmon.web._limits import Limits
from klingmon.web._metrics import MeteredTransport, Metrics
from klingmon.web._receiver import MAX_BODY, Outcome, Receiver, ReceiverSettings
from klingmon.web._signature import SignatureError, sign_headers, verify_signature

__all__ = [
    "CALLBACK_PATH",
    "MAX_BODY",
    "Dashboard",
    "HostPolicy",
    "Limits",
    "MeteredTransport",
    "Metrics",
    "Outcome",
    "Receiver",
    "ReceiverSettings",
    "SignatureError",
    "callback_token",
    "callback_url_builder",
    "create_app",
    "server_secret",
    "sign_headers",
    "token_matches",
    "url_host",
    "verify_signature",
]
