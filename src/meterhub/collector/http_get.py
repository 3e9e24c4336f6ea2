"""A lean HTTP/1.1 GET for polling meters: one connection per request, parsed by httptools.

The socket is created here so that it can be bound to a chosen source address: while
meters listen on every ephemeral port of 127.0.0.1, connect() cannot pick a source port
(EADDRNOTAVAIL), but bind() to another address such as 127.0.0.2 can, because it only
avoids ports taken on that address. When the server announces ``Connection: close``, the
client waits for its FIN before closing, so TIME_WAIT lands on the server.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

import httptools

from meterhub.errors import MeterAnswerInvalid, MeterError, MeterTimeout, MeterUnreachable


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """A complete HTTP response: its status code and its (de-chunked) body."""

    status: int
    body: bytes


async def http_get(
    host: str,
    port: int,
    *,
    path: str = "/",
    timeout: float,
    source_address: str | None = None,
    max_body: int = 65536,
) -> HttpAnswer:
    """GET ``http://host:port/path`` over IPv4 on a fresh connection; return the complete answer.

    ``timeout`` covers connect and response. Raises ``MeterUnreachable`` (refused, reset,
    closed early, bind/connect failure), ``MeterTimeout`` or ``MeterAnswerInvalid``
    (malformed HTTP, body over ``max_body`` bytes). Any HTTP status is returned, not raised.
    """
    loop = asyncio.get_running_loop()
    exchange = _Exchange(loop.create_future(), max_body)
    try:
        async with asyncio.timeout(timeout):
            transport = await _connect(loop, host, port, source_address, exchange)
            try:
                transport.write(_request(host, port, path))
                outcome = await exchange.done
            finally:
                transport.abort()
    except TimeoutError:
        if exchange.answer is not None:  # complete, but the server did not close in time
            return exchange.answer
        raise MeterTimeout(f"timed out after {timeout} s") from None
    except OSError as exc:
        raise MeterUnreachable(_describe(exc)) from exc
    if isinstance(outcome, MeterError):
        raise outcome
    return outcome


def _request(host: str, port: int, path: str) -> bytes:
    """The request bytes: ``Connection: close`` so the server closes first."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
        "Accept: application/json\r\n\r\n"
    ).encode("latin-1")


async def _connect(
    loop: asyncio.AbstractEventLoop,
    host: str,
    port: int,
    source_address: str | None,
    exchange: _Exchange,
) -> asyncio.Transport:
    """Open a (optionally source-bound) socket, connect it and hand it to a transport."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if source_address is not None:
            _bind_source(sock, source_address)
        await loop.sock_connect(sock, (host, port))
        transport, _ = await loop.create_connection(lambda: exchange, sock=sock)
    except BaseException:
        sock.close()  # a no-op once a failed transport has closed or detached it
        raise
    return transport


def _bind_source(sock: socket.socket, source_address: str) -> None:
    """Bind to ``source_address`` with a port bind() picks among those free on that address."""
    try:
        sock.bind((source_address, 0))
    except OSError as exc:
        raise MeterUnreachable(f"cannot bind to {source_address}: {exc.strerror or exc}") from exc


def _describe(exc: OSError) -> str:
    """A short human message for a network ``OSError``."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    return f"network error: {exc.strerror or exc}"


class _Exchange(asyncio.Protocol):
    """Feeds received bytes to httptools; resolves ``done`` with the answer or a MeterError."""

    def __init__(self, done: asyncio.Future[HttpAnswer | MeterError], max_body: int) -> None:
        self.done = done
        self.answer: HttpAnswer | None = None
        self._max_body = max_body
        self._parser = httptools.HttpResponseParser(self)
        self._chunks: list[bytes] = []
        self._size = 0
        self._headers_complete = False
        self._framed = False  # body delimited by Content-Length or chunked, not by EOF

    def data_received(self, data: bytes) -> None:
        if self.answer is not None or self.done.done():
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._settle(MeterAnswerInvalid(f"malformed HTTP response: {exc}"))

    def eof_received(self) -> None:
        self._end(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc)

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or (
            name == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headers_complete = True

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._max_body:
            self._settle(MeterAnswerInvalid(f"body over {self._max_body} bytes"))
        else:
            self._chunks.append(body)

    def on_message_complete(self) -> None:
        if self.done.done():
            return
        self.answer = HttpAnswer(self._parser.get_status_code(), b"".join(self._chunks))
        if self._parser.should_keep_alive():  # else wait for the server's FIN
            self._settle(self.answer)

    def _end(self, exc: Exception | None) -> None:
        """The connection ended: a body delimited by EOF is complete, anything else is cut."""
        if self.done.done():
            return
        if self.answer is None and exc is None and self._headers_complete and not self._framed:
            self.answer = HttpAnswer(self._parser.get_status_code(), b"".join(self._chunks))
        if self.answer is not None:
            self._settle(self.answer)
        elif isinstance(exc, OSError):
            self._settle(MeterUnreachable(_describe(exc)))
        else:
            self._settle(MeterUnreachable("connection closed before a complete response"))

    def _settle(self, outcome: HttpAnswer | MeterError) -> None:
        """Resolve ``done`` once; an error is a result so it is never left unretrieved."""
        if not self.done.done():
            self.done.set_result(outcome)
