"""What the simulator sends back, as data, and its conversion to ASGI responses."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from klingmon.sim._json import dumps
from klingmon.sim._validate import MESSAGES, STATUS_FOR_CODE

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

__all__ = [
    "DROP_HEADER",
    "Answer",
    "DroppedResponse",
    "dumps",
    "error",
    "ok",
    "ok_items",
]

#: Marks an answer whose connection must drop (read by the in-process transport).
DROP_HEADER = "x-klingmon-sim-drop"


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer: a JSON payload, raw bytes, or a dropped connection."""

    status: int
    payload: dict[str, Any] | None = None
    raw: bytes | None = None
    drop: bool = False
    malformed: bool = False

    @property
    def code(self) -> int | None:
        if self.payload is None:
            return None
        code = self.payload.get("code")
        return code if isinstance(code, int) else None

    @property
    def outcome(self) -> str:
        """The counter key: ``200``, ``429-1303``, ``drop``, ``200-malformed``."""
        if self.drop:
            return "drop"
        if self.malformed:
            return f"{self.status}-malformed"
        if self.code:
            return f"{self.status}-{self.code}"
        return str(self.status)

    def response(self) -> Response:
        if self.drop:
            return DroppedResponse()
        if self.raw is not None:
            return Response(self.raw, self.status, media_type="application/json")
        return Response(dumps(self.payload), self.status, media_type="application/json")


def ok(data: Any) -> Answer:
    return Answer(
        200,
        {
            "code": 0,
            "message": "SUCCEED",
            "request_id": str(uuid.uuid4()),
            "data": data,
        },
    )


def ok_items(items: list[str]) -> Answer:
    """:func:`ok` for a list of items already encoded (list pages reuse them)."""
    head = dumps({"code": 0, "message": "SUCCEED", "request_id": str(uuid.uuid4())})
    return Answer(200, raw=head[:-1] + b',"data":[' + ",".join(items).encode() + b"]}")


def error(code: int, message: str | None = None, status: int | None = None) -> Answer:
    """Kling's error envelope; errors carry no ``data``."""
    return Answer(
        status or STATUS_FOR_CODE.get(code, 400),
        {
            "code": code,
            "message": message or MESSAGES.get(code, "error"),
            "request_id": str(uuid.uuid4()),
        },
    )


class DroppedResponse(Response):
    """Headers promising a body, then nothing: the server closes the connection."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(
        self,
        scope: Scope,  # noqa: ARG002 -- the ASGI signature
        receive: Receive,  # noqa: ARG002
        send: Send,
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"512"),
                    (DROP_HEADER.encode(), b"1"),
                ],
            }
        )
