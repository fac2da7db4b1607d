"""Kling authentication as ``httpx.Auth``: a cached, self-renewing JWT or an API key.

The token is minted under a lock shared by the sync and async flows, renewed well
before it expires, and re-minted once when Kling answers 401 with code 1003 (not yet
valid) or 1004 (expired). Those two answers usually mean our clock is off: the
``Date`` header of the answer tells Kling's time, and tokens are minted on Kling's
clock from then on, with one warning, instead of failing every request.
"""

from __future__ import annotations

import email.utils
import json
import logging
import threading
import warnings
from typing import TYPE_CHECKING

import httpx
import jwt
import jwt.warnings

from klingmon.api._endpoints import Generation, generation_of
from klingmon.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Generator

    from klingmon._clock import Clock

__all__ = [
    "SKEW_TOLERANCE",
    "TOKEN_LIFETIME",
    "TOKEN_RENEW_BEFORE",
    "ApiKeyAuth",
    "GenerationAuth",
    "JwtAuth",
    "check_auth",
    "generation_of_request",
]

logger = logging.getLogger(__name__)

#: Seconds a minted token is valid, as Kling's sample does it.
TOKEN_LIFETIME = 1800
#: A cached token with less than this left is replaced before use.
TOKEN_RENEW_BEFORE = 300
#: A clock this far from Kling's (seconds) is corrected for.
SKEW_TOLERANCE = 30.0
_NBF_SKEW = 5
_CLOCK_CODES = frozenset({1003, 1004})  # not yet valid, expired
_SHORT_KEY_WARNING: type[Warning] | None = getattr(
    jwt.warnings, "InsecureKeyLengthWarning", None
)


def _kling_code(response: httpx.Response) -> int | None:
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, int) else None


class JwtAuth(httpx.Auth):
    """AccessKey/SecretKey auth: an HS256 JWT ``{iss, exp, nbf}`` sent as a bearer."""

    requires_response_body = True

    def __init__(self, access_key: str, secret_key: str, clock: Clock) -> None:
        if not access_key or not secret_key:
            raise ValueError("access_key and secret_key are both required")
        self._access_key = access_key
        self._secret_key = secret_key
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self._offset = 0.0
        #: How many tokens were minted (for tests and metrics; never the token).
        self.minted = 0

    @property
    def clock_offset(self) -> float:
        """Kling's clock minus ours, in seconds, as learned from its ``Date`` header."""
        return self._offset

    def _now(self) -> float:
        return self._clock.now() + self._offset

    def token(self) -> str:
        """The cached token, minted anew when missing or close to expiry."""
        with self._lock:
            if self._token is None or self._expires - self._now() < (
                TOKEN_RENEW_BEFORE
            ):
                self._mint()
            assert self._token is not None  # noqa: S101 - set by _mint
            return self._token

    def renew(self, rejected: str) -> str:
        """A new token, unless another request already replaced ``rejected``."""
        with self._lock:
            if self._token == rejected:
                self._mint()
            assert self._token is not None  # noqa: S101 - set by _mint
            return self._token

    def learn_skew(self, response: httpx.Response) -> bool:
        """Set the offset from the answer's ``Date`` when our clock is far off."""
        try:
            server = email.utils.parsedate_to_datetime(response.headers["date"])
        except (KeyError, TypeError, ValueError):
            return False
        skew = server.timestamp() - self._clock.now()
        with self._lock:
            if abs(skew - self._offset) < SKEW_TOLERANCE:
                return False
            self._offset = skew
        logger.warning("auth.clock_skew", extra={"skew_seconds": round(skew, 1)})
        return True

    def _mint(self) -> None:
        now = int(self._now())
        claims = {
            "iss": self._access_key,
            "exp": now + TOKEN_LIFETIME,
            "nbf": now - _NBF_SKEW,
        }
        with warnings.catch_warnings():
            # Kling issues the secret key; a short one is not ours to refuse.
            if _SHORT_KEY_WARNING is not None:
                warnings.simplefilter("ignore", _SHORT_KEY_WARNING)
            self._token = jwt.encode(
                claims, self._secret_key, algorithm="HS256", headers={"typ": "JWT"}
            )
        self._expires = float(now + TOKEN_LIFETIME)
        self.minted += 1

    def auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401 and _kling_code(response) in _CLOCK_CODES:
            # One more try, never a loop: a second refusal goes to the caller.
            self.learn_skew(response)
            request.headers["Authorization"] = f"Bearer {self.renew(token)}"
            yield request

    def __repr__(self) -> str:
        return "JwtAuth(access_key='***', secret_key='***')"


class ApiKeyAuth(httpx.Auth):
    """A plain API key sent as a bearer (Kling's 2026 single-key accounts)."""

    def __init__(self, api_key: str) -> None:
        if not api_key:
            raise ValueError("api_key is required")
        self._api_key = api_key

    def auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._api_key}"
        yield request

    def __repr__(self) -> str:
        return "ApiKeyAuth(api_key='***')"


def check_auth(endpoint: str, *, has_api_key: bool, has_key_pair: bool) -> None:
    """Refuse, before anything is stored or sent, an endpoint these credentials lack.

    The new generation takes API keys only: a JWT from an access/secret pair is
    refused there with 401/1002. Raises :class:`~klingmon.errors.ConfigError`.
    """
    generation = generation_of(endpoint)
    if generation is Generation.V2026 and not has_api_key:
        what = (
            "only KLING_ACCESS_KEY/KLING_SECRET_KEY are"
            if has_key_pair
            else ("no credentials are")
        )
        raise ConfigError(
            f"{endpoint} is a new-generation Kling endpoint, which takes an API key "
            f"only; set KLING_API_KEY ({what} configured)"
        )
    if generation is Generation.LEGACY and not (has_api_key or has_key_pair):
        raise ConfigError(
            "no Kling credentials: set KLING_ACCESS_KEY and KLING_SECRET_KEY, "
            "or KLING_API_KEY"
        )


def generation_of_request(path: str) -> Generation:
    """The generation of a request already built: ``/v1/`` anywhere is legacy.

    (A base URL may carry a path prefix, so the segment is looked for anywhere.)
    ``/account/costs`` predates API keys and takes both credentials: it is signed
    as a legacy request (a JWT, or the API key when that is all there is).
    """
    if "/v1/" in path + "/" or path.rstrip("/").endswith("/account/costs"):
        return Generation.LEGACY
    return Generation.V2026


class GenerationAuth(httpx.Auth):
    """Each request signed as its generation wants: legacy by ``legacy``, new by key.

    Legacy paths take a JWT or an API key; the new generation (``/<family>/<model>``,
    ``/tasks``, ``/account/...``) an API key only. A new-generation request without
    one raises :class:`~klingmon.errors.ConfigError` instead of being sent.
    """

    requires_response_body = True

    def __init__(self, legacy: httpx.Auth | None, api_key: ApiKeyAuth | None) -> None:
        if legacy is None and api_key is None:
            raise ValueError("no credentials")
        self._legacy = legacy
        self._api_key = api_key

    def auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        if generation_of_request(request.url.path) is Generation.V2026:
            if self._api_key is None:
                raise ConfigError(
                    f"{request.url.path} is a new-generation Kling endpoint, which "
                    "takes an API key only; set KLING_API_KEY"
                )
            yield from self._api_key.auth_flow(request)
            return
        auth = self._legacy if self._legacy is not None else self._api_key
        assert auth is not None  # noqa: S101 - one of the two is set
        yield from auth.auth_flow(request)

    def __repr__(self) -> str:
        return f"GenerationAuth(legacy={self._legacy!r}, api_key={self._api_key!r})"
