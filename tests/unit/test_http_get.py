"""http_get against real sockets on 127.0.0.1, on the default asyncio loop and on uvloop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

import pytest
import uvloop

from meterhub.collector.http_get import HttpAnswer, http_get
from meterhub.errors import MeterAnswerInvalid, MeterError, MeterTimeout, MeterUnreachable

T = TypeVar("T")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

JSON = b'{"id":"44","A":"50","kW":"44325"}'
OK = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(JSON), JSON)


class Run(Protocol):
    def __call__(self, coro: Coroutine[Any, Any, T], /) -> T: ...


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    """Run a coroutine to completion on a fresh loop of the parametrised kind."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else None

    def _run(coro: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)

    return _run


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[int]:
    """Serve ``handler`` on 127.0.0.1:<free port>; yield the port. The writer is always closed."""

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with contextlib.suppress(ConnectionError):
                await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0, backlog=512)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def answering(raw: bytes, seen: list[bytes] | None = None) -> Handler:
    """A handler that reads the request head, sends ``raw`` and closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if seen is not None:
            seen.append(head)
        writer.write(raw)
        await writer.drain()

    return handle


def hanging(accepted: asyncio.Event | None = None, closed: asyncio.Event | None = None) -> Handler:
    """A handler that accepts, never answers, and notes when the client closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if accepted is not None:
            accepted.set()
        await reader.read()  # until the client's FIN
        if closed is not None:
            closed.set()

    return handle


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def steady_fds() -> int:
    """The fd count once it stops changing between two looks 50 ms apart."""
    count = open_fds()
    while True:
        await asyncio.sleep(0.05)
        count, previous = open_fds(), count
        if count == previous:
            return count


async def fds_settle_to(baseline: int) -> int:
    """Give both ends up to 2 s to finish closing; return the final fd count."""
    for _ in range(100):
        if open_fds() <= baseline:
            break
        await asyncio.sleep(0.02)
    return open_fds()


async def get_from(handler: Handler, **kwargs: Any) -> HttpAnswer:
    async with serving(handler) as port:
        return await http_get("127.0.0.1", port, **{"timeout": 2.0, **kwargs})


def test_200_with_content_length(run: Run) -> None:
    seen: list[bytes] = []
    answer = run(get_from(answering(OK, seen), path="/now"))
    assert answer == HttpAnswer(200, JSON)
    assert seen[0].startswith(b"GET /now HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Connection: close\r\n" in seen[0]


def test_body_ending_at_eof(run: Run) -> None:
    raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + JSON
    assert run(get_from(answering(raw))) == HttpAnswer(200, JSON)


def test_chunked_body(run: Run) -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    assert run(get_from(answering(raw))) == HttpAnswer(200, b"hello world")


def test_404_is_a_status_not_an_error(run: Run) -> None:
    raw = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found"
    assert run(get_from(answering(raw))) == HttpAnswer(404, b"not found")


def test_keep_alive_answer_returns_without_waiting_for_close(run: Run) -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(JSON), JSON)

    async def keep_open(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answering(raw)(reader, writer)
        await reader.read()

    started = time.monotonic()
    assert run(get_from(keep_open, timeout=5.0)) == HttpAnswer(200, JSON)
    assert time.monotonic() - started < 1.0


def test_complete_answer_kept_when_server_never_closes(run: Run) -> None:
    async def never_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answering(OK)(reader, writer)
        await reader.read()

    assert run(get_from(never_close, timeout=0.2)) == HttpAnswer(200, JSON)


def test_connection_refused(run: Run) -> None:
    with pytest.raises(MeterUnreachable, match=r"^connection refused$"):
        run(http_get("127.0.0.1", closed_port(), timeout=2.0))


def test_silent_server_times_out(run: Run) -> None:
    started = time.monotonic()
    with pytest.raises(MeterTimeout, match=r"^timed out after 0\.3 s$"):
        run(get_from(hanging(), timeout=0.3))
    assert time.monotonic() - started < 0.3 + 0.5


def test_garbage_is_invalid(run: Run) -> None:
    with pytest.raises(MeterAnswerInvalid, match=r"^malformed HTTP response: "):
        run(get_from(answering(b"\x16\x03\x01garbage\r\n\r\n")))


def test_close_mid_body_is_unreachable(run: Run) -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{partial"
    with pytest.raises(MeterUnreachable, match="closed before a complete response") as caught:
        run(get_from(answering(raw)))
    assert not isinstance(caught.value, MeterTimeout)


def test_oversized_body_is_invalid(run: Run) -> None:
    big = b"x" * 70_000
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(big), big)
    with pytest.raises(MeterAnswerInvalid, match=r"^body over 65536 bytes$"):
        run(get_from(answering(raw)))


def test_oversized_body_ending_at_eof_is_invalid(run: Run) -> None:
    raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + JSON
    with pytest.raises(MeterAnswerInvalid, match=r"^body over 10 bytes$"):
        run(get_from(answering(raw), max_body=10))


def test_source_address_is_used(run: Run) -> None:
    peers: list[str] = []

    async def note_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername")[0])
        await answering(OK)(reader, writer)

    assert run(get_from(note_peer, source_address="127.0.0.2")) == HttpAnswer(200, JSON)
    assert peers == ["127.0.0.2"]


def test_unusable_source_address_is_unreachable(run: Run) -> None:
    with pytest.raises(MeterUnreachable, match=r"^cannot bind to 192.0.2.1: "):
        run(get_from(answering(OK), source_address="192.0.2.1"))


def test_no_fd_leak_after_500_failures(run: Run) -> None:
    async def scenario() -> None:
        garbage = answering(b"garbage\r\n\r\n")
        cut = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{")
        eof_body = answering(b"HTTP/1.1 200 OK\r\n\r\n" + JSON)
        async with (
            serving(garbage) as garbage_port,
            serving(cut) as cut_port,
            serving(eof_body) as eof_port,
            serving(hanging()) as hang_port,
        ):
            cases: list[tuple[int, dict[str, Any]]] = [
                (closed_port(), {}),
                (garbage_port, {}),
                (cut_port, {}),
                (eof_port, {"max_body": 5}),
                (hang_port, {"timeout": 0.05}),
                (garbage_port, {"source_address": "192.0.2.1"}),
            ]
            gate = asyncio.Semaphore(50)

            async def fail(port: int, kwargs: dict[str, Any]) -> None:
                async with gate:
                    with pytest.raises(MeterError):
                        await http_get("127.0.0.1", port, **{"timeout": 2.0, **kwargs})

            await asyncio.gather(*(fail(*case) for case in cases))  # warm up lazy loop state
            baseline = await steady_fds()
            await asyncio.gather(
                *(fail(*case) for case in itertools.islice(itertools.cycle(cases), 500))
            )
            assert await fds_settle_to(baseline) == baseline

    run(scenario())


def test_cancellation_closes_the_socket(run: Run) -> None:
    async def scenario() -> None:
        accepted, closed = asyncio.Event(), asyncio.Event()
        async with serving(hanging(accepted, closed)) as port:
            baseline = open_fds()
            task = asyncio.create_task(http_get("127.0.0.1", port, timeout=5.0))
            await asyncio.wait_for(accepted.wait(), 2.0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(closed.wait(), 2.0)  # the server saw the client's FIN
            assert await fds_settle_to(baseline) == baseline

    run(scenario())
