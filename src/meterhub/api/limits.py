"""The request body limit of every endpoint (``max_body_bytes``), checked before the body
is read: by its ``Content-Length``, or, for a chunked body, as it arrives."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meterhub.api.errors import BodyTooLarge, too_large_response


class BodyLimit:
    """Answers 413 at once to a request declaring a body over ``limit`` bytes (the body is
    never read, and a client sending ``Expect: 100-continue`` never sends it). A body of
    unknown length (``Transfer-Encoding: chunked``) is counted as the app reads it: past
    the limit, reading raises ``BodyTooLarge``, which the error handlers answer with 413.
    A request with a ``Content-Length`` within the limit goes through untouched (the server
    reads no more than it declares)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, chunked = _framing(scope["headers"])
        if declared is not None and declared > self.limit:
            message = f"over {self.limit} bytes (Content-Length: {declared})"
            await too_large_response(scope["path"], message)(scope, receive, send)
            return
        if declared is not None or not chunked:
            await self.app(scope, receive, send)
            return
        await self._counted(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        started = False

        async def counting() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting, sending)
        except BodyTooLarge as exc:  # read where no error handler stands (after a response)
            if started:
                raise
            await too_large_response(scope["path"], exc.detail)(scope, receive, send)


def _framing(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, bool]:
    """The declared ``Content-Length`` (``None`` without one), and whether the body is
    chunked."""
    declared, chunked = None, False
    for name, value in headers:
        if name == b"content-length":
            declared = int(value) if value.isdigit() else None
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    return declared, chunked
