"""One compaction pass in a process of its own, as ``serve`` runs them (``Compactor``).

``python -m meterhub.storage.compact_pass SETTLE_US [RETAIN_US]``, the database named by
``METERHUB_DATABASE_URL`` (not on the command line, where any user may read it): compacts
every closed day, then drops the points past the raw retention when RETAIN_US is given, and
prints ``{"moved": n, "dropped": n}``. It stops after the day it is moving once its
standard input ends: closed by the server, or by the system when the server is gone.
"""

from __future__ import annotations

import json
import os
import sys
import threading

from meterhub.db import make_engine
from meterhub.storage.compactor import compact
from meterhub.storage.retention import drop_before, retention_day


def main(argv: list[str]) -> None:
    settle_us = int(argv[0])
    retain_us = int(argv[1]) if len(argv) > 1 else None
    stop = threading.Event()
    threading.Thread(target=_stop_at_end_of_input, args=(stop,), daemon=True).start()
    engine = make_engine(os.environ["METERHUB_DATABASE_URL"])
    try:
        moved = compact(engine, settle_us=settle_us, stop=stop, yielding=True)
        dropped = 0
        if retain_us is not None and not stop.is_set():
            dropped = drop_before(engine, retention_day(retain_us))
    finally:
        engine.dispose()
    print(json.dumps({"moved": moved, "dropped": dropped}), flush=True)


def _stop_at_end_of_input(stop: threading.Event) -> None:
    """Set ``stop`` at the end of standard input, read from its descriptor (a thread left
    blocked in ``sys.stdin`` would hold its lock while the interpreter shuts down)."""
    while os.read(sys.stdin.fileno(), 4096):
        pass
    stop.set()


if __name__ == "__main__":
    main(sys.argv[1:])
