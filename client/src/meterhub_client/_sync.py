"""``DataInteractionClient``: the core of ``_core`` sending over one ``httpx.Client``.

GENERATED from ``_async.py`` by ``scripts/unasync.py``: edit that file, not this one.
The client is thread-safe; retry pauses use ``time.sleep``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from datetime import timedelta
from types import TracebackType
from typing import Any, Self

import httpx

from meterhub_client._core import IN_FLIGHT, BaseClient, Batch, Call, InThread, Reply
from meterhub_client._encoding import TimeInput
from meterhub_client.request_data import (
    UNSET,
    RequestData,
    TagIdsInput,
    ValuesInput,
    _Unset,
    given,
)
from meterhub_client.tags import Tag


class DataInteractionClient(BaseClient):
    """Client of the meterhub platform data API; one connection pool per client.

    ``base_url``: the platform, e.g. ``"http://127.0.0.1:8000"`` (a trailing slash is
    fine). ``timeout``: seconds per attempt. ``retries``: further attempts after a
    connection error, timeout or 5xx status, pausing ``backoff * 2**n`` seconds.
    ``max_points_per_request``: ``set_data`` batch size. ``transport``: an httpx
    transport, e.g. ``httpx.HTTPTransport(retries=1)``. ``headers``: sent with every request.

    Use ``with`` or call :meth:`close` when done.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_points_per_request: int = 5000,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            base_url,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            max_points_per_request=max_points_per_request,
            headers=headers,
        )
        self._http = httpx.Client(
            transport=transport,
            timeout=self.timeout,
            headers=self.headers,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def connect(self, data_source_id: str | int) -> dict[str, Any]:
        """Connect to a data source: the platform's answer, with ``attributes`` and ``tags``.

        Raises :class:`DataSourceNotFound` or :class:`DataSourceNotActive`.
        """
        call = self.build_connect(data_source_id)
        return self.parse_connect(call, self._send(call))

    def set_data(self, tags: Tag | Iterable[Tag]) -> int:
        """Send the points buffered in ``tags``; the number of points the platform wrote.

        A snapshot of each buffer is sent in batches of at most ``max_points_per_request``
        points; each acknowledged batch removes exactly its points from the buffers. Up to
        four batches travel at once, never two that share a tag: a tag's points reach the
        platform in the order they were added, so of a repeated time the last one wins.
        On an exception, the points of every batch not acknowledged stay buffered: the
        failed batch's and the later ones' (resending is safe: a point replaces any at
        the same tag and time).
        Raises :class:`NoDataToSend` when no tag holds a point.
        """
        written = 0
        sending: list[tuple[Batch, InThread[Reply]]] = []
        try:
            for batch in self.build_set_data(tags):
                while sending and (
                    len(sending) >= IN_FLIGHT or batch.waits_for(b for b, _ in sending)
                ):
                    sent, reply = sending.pop(0)
                    written += sent.acknowledge(self._reply(reply))
                sending.append((batch, self._start(batch.call)))
            while sending:
                sent, reply = sending.pop(0)
                written += sent.acknowledge(self._reply(reply))
        except Exception:
            self._settle(sending)
            raise
        except BaseException:  # cancelled or interrupted: the calls in flight are dropped
            for _, reply in sending:
                reply.cancel()
            raise
        return written

    def get_data(
        self,
        request: RequestData | None = None,
        *,
        tag_id: TagIdsInput | _Unset = UNSET,
        from_time: TimeInput | _Unset | None = UNSET,
        to_time: TimeInput | _Unset | None = UNSET,
        max_count: int | _Unset | None = UNSET,
        time_step: int | timedelta | _Unset | None = UNSET,
        value: ValuesInput | _Unset | None = UNSET,
        format_param: bool | _Unset | None = UNSET,
        actual: bool | _Unset | None = UNSET,
    ) -> list[dict[str, Any]]:
        """Read history: ``[{"tagId", "excess", "data": [{"x", "y", "q"}, ...]}, ...]``.

        Give a :class:`RequestData`, keywords (as for ``create_request_data``), or both:
        keywords then override the request's attributes for this call only.
        """
        changes = given(
            tag_id=tag_id,
            from_time=from_time,
            to_time=to_time,
            max_count=max_count,
            time_step=time_step,
            value=value,
            format_param=format_param,
            actual=actual,
        )
        call = self.build_get_data(request, changes)
        return self.parse_get_data(call, self._send(call))

    def _start(self, call: Call) -> InThread[Reply]:
        """``_send(call)`` begun; ``_reply`` waits for its reply."""
        return InThread(self._send, call)

    def _reply(self, sending: InThread[Reply]) -> Reply:
        """The reply of a call begun by ``_start``."""
        return sending.result()

    def _settle(self, sending: list[tuple[Batch, InThread[Reply]]]) -> None:
        """After a failed batch: wait for the batches still in flight; those the platform
        acknowledged leave the buffers, the others' points stay."""
        for batch, reply in sending:
            with contextlib.suppress(Exception):
                batch.acknowledge(self._reply(reply))

    def _send(self, call: Call) -> Reply:
        """One call with retries: the final reply, or TransportError when none came."""
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    call.method,
                    call.url,
                    content=call.content,
                    headers=call.headers,
                )
            except httpx.HTTPError as exc:
                delay = self.retry_delay(attempt, error=exc)
                if delay is None:
                    raise self.transport_error(call, exc, attempt + 1) from exc
            else:
                reply = Reply(response.status_code, response.content)
                delay = self.retry_delay(attempt, status_code=reply.status_code)
                if delay is None:
                    return reply
            time.sleep(delay)
            attempt += 1
