"""Generate ``_sync.py`` from ``_async.py`` (after httpcore's ``scripts/unasync.py``).

    python client/scripts/unasync.py          # rewrite src/meterhub_client/_sync.py
    python client/scripts/unasync.py --check  # exit 1 if it is out of date

The async client is the one written by hand; the sync one is a textual rewrite of it.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "meterhub_client"
SOURCE = PACKAGE / "_async.py"
TARGET = PACKAGE / "_sync.py"

HEADER = (
    '"""``AsyncDataInteractionClient``: the core of ``_core`` sending over one'
    " ``httpx.AsyncClient``.\n\n"
    "The source of ``_sync.py``, which ``scripts/unasync.py`` generates from this file.\n"
    'Retry pauses use ``asyncio.sleep``, so this client runs under asyncio.\n"""',
    '"""``DataInteractionClient``: the core of ``_core`` sending over one ``httpx.Client``.\n\n'
    "GENERATED from ``_async.py`` by ``scripts/unasync.py``: edit that file, not this one.\n"
    'The client is thread-safe; retry pauses use ``time.sleep``.\n"""',
)

REPLACEMENTS = (
    HEADER,
    ("import asyncio\nimport contextlib\n", "import contextlib\nimport time\n"),
    (
        "IN_FLIGHT, BaseClient, Batch, Call, Reply",
        "IN_FLIGHT, BaseClient, Batch, Call, InThread, Reply",
    ),
    ("asyncio.Task[Reply]", "InThread[Reply]"),
    ("asyncio.ensure_future(self._send(call))", "InThread(self._send, call)"),
    ("return await sending", "return sending.result()"),
    ("AsyncDataInteractionClient", "DataInteractionClient"),
    ("httpx.AsyncClient", "httpx.Client"),
    ("httpx.AsyncBaseTransport", "httpx.BaseTransport"),
    ("Async client of", "Client of"),
    ("e.g. ``httpx.ASGITransport(app)``", "e.g. ``httpx.HTTPTransport(retries=1)``"),
    ("``async with``", "``with``"),
    (":meth:`aclose`", ":meth:`close`"),
    ("async def __aenter__", "def __enter__"),
    ("async def __aexit__", "def __exit__"),
    ("async def aclose", "def close"),
    ("self._http.aclose()", "self._http.close()"),
    ("self.aclose()", "self.close()"),
    ("asyncio.sleep", "time.sleep"),
    ("async def ", "def "),
    ("await ", ""),
)


def unasync(text: str) -> str:
    """The sync twin of the async client's source."""
    for old, new in REPLACEMENTS:
        if old not in text:
            raise SystemExit(f"unasync: {old!r} no longer occurs in {SOURCE.name}")
        text = text.replace(old, new)
    return text


def main(argv: list[str]) -> int:
    generated = unasync(SOURCE.read_text(encoding="utf-8"))
    if "--check" in argv:
        if TARGET.read_text(encoding="utf-8") != generated:
            print(f"{TARGET} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(generated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
