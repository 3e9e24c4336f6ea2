"""The connector SDK (``meterhub_client``) against the real app, end to end.

Every test runs on six *stacks*: each database (fresh SQLite, fresh PostgreSQL) with

- ``async-asgi``: :class:`AsyncDataInteractionClient` on the app in-process through
  ``httpx.ASGITransport`` (no lifespan runs, which is fine with the collector disabled);
- ``sync-server`` and ``async-server``: :class:`DataInteractionClient` and
  :class:`AsyncDataInteractionClient` over HTTP to ``meterhub serve`` (uvicorn) on 127.0.0.1.

There is no ``sync-asgi`` stack: httpx's ``ASGITransport`` is async only, and the sync
``httpx.Client`` cannot drive an ASGI app (its ``WSGITransport`` is for WSGI apps).

Each stack creates its own data source with five tags in one ``POST /api/v1/data-sources/``
(three FLOAT, one of them named by the pair id ``{"tagName", "parentObjectId"}``, one
INTEGER and one BOOLEAN, which is stepwise), connects with the SDK and pushes 10,000 points
(2,000 a tag, irregular times down to 1 µs apart, in seven time forms, mixed qualities)
with ``Tag.add_data`` / ``Tag.update`` / ``set_data`` in batches of 1,500, then re-sends
250 of them (150 changed: the platform upserts, so the count stays 10,000). The platform
wants a token unless ``open_ingest`` is set: an admin token is made in each database and
sent by every client (``headers=``).

The read-back matrix (on the ``sync-server`` stacks: what it checks is the server's answers,
which the other stacks share) then asks for every combination of from/to (9 kinds of period:
none, only from, only to, both, both on stored points, both between points, reversed, after
the data, one instant), actual (absent/true/false), timeStep (absent/regular), maxCount
(absent/23, which thins/1,000,000), value (absent/present: a number or a list, by period)
and format (absent/true), all five tags per request: 648 requests per database. Each answer
is compared with :func:`expected_history`: the documented rules of
``meterhub.storage.history`` worked out here, naively, over the points the test pushed
(never over what the database holds). Combinations the server refuses by contract
(``timeStep`` without both bounds, ``timeStep`` with ``value``) must give error 1.

Then the errors: unknown and inactive sources (and an inactive tag), unknown tags, a batch
refused halfway, no token, and 83 malformed requests (35 set, 40 get, 8 connect), each
sent raw (the SDK would refuse most of them before sending) with its own expected error
id; after each, the database must hold as many points, tags and sources as before and the
source's points must be as pushed (a fingerprint worked out by the database; the last test
of each stack compares every point, through the SDK and straight from the database).

Times beyond the years 1-9999 or 64 bits, integers beyond any float and steps beyond the
period each get their own answer (errors 5 and 6, a one-instant grid), never an HTTP 500.

Data times lie in ``America/St_Johns`` (UTC-3:30, DST from 2024-03-10), the server's zone,
so naive times and ``format: true`` answers cross a half-hour offset and a DST change.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import random
from bisect import bisect_right
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from meterhub.api.app import create_app
from meterhub.migrations import upgrade
from meterhub.registry.users import create_user, issue_token
from meterhub.settings import Settings
from meterhub_client import (
    AsyncDataInteractionClient,
    AuthenticationError,
    DataInteractionClient,
    DataSourceNotActive,
    DataSourceNotFound,
    ErrorCode,
    NoDataToSend,
    RequestData,
    ServerResponseError,
    Tag,
    TagId,
    TagNotFound,
)
from tests.conftest import fresh_postgres
from tests.support import Server

TZ_NAME = "America/St_Johns"
ZONE = ZoneInfo(TZ_NAME)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
POINTS_PER_TAG = 2_000
BATCH = 1_500  # max_points_per_request: 10,000 points go in 7 requests
HARD_CAP = 100_000  # documented: the most points one tag ever returns
SMALL_MAX_COUNT = 23  # 5 buckets of 4 points, and room for bound values
LARGE_MAX_COUNT = 1_000_000  # above HARD_CAP: counts as HARD_CAP
MiB = 1024 * 1024

Pt = tuple[int, float, int]
"""A point as the reference sees it: (µs since the epoch, value, quality)."""


def to_us(moment: datetime) -> int:
    """µs since the epoch of an aware datetime, exactly."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int, zone: Any = ZONE) -> datetime:
    return (EPOCH + timedelta(microseconds=us)).astimezone(zone)


def naive_local(us: int) -> datetime | None:
    """The naive wall-clock time of ``us`` in the server's zone, if it names ``us`` alone."""
    naive = from_us(us).replace(tzinfo=None)
    if to_us(naive.replace(tzinfo=ZONE)) != us or to_us(naive.replace(tzinfo=ZONE, fold=1)) != us:
        return None  # in a DST gap or fold
    return naive


# --- the tags and the points pushed ---------------------------------------------------------


@dataclass(frozen=True)
class TagPlan:
    name: str
    value_type: int  # 1 FLOAT, 2 INTEGER, 3 BOOLEAN
    pair: bool = False  # named {"tagName": name, "parentObjectId": source}

    @property
    def stepwise(self) -> bool:
        return self.value_type == 3

    def wire_id(self, source: str) -> str | dict[str, str]:
        if self.pair:
            return {"tagName": self.name, "parentObjectId": source}
        return f"{source}.{self.name}"


PLANS = (
    TagPlan("flow", 1),
    TagPlan("temp", 1),
    TagPlan("kW", 1, pair=True),
    TagPlan("count", 2),
    TagPlan("valve", 3),
)
GAPS = (1, 17, 999_999, 59_999_999, 60_000_000, 120_000_123, 600_000_000, 3_600_000_000)
T0 = to_us(datetime(2024, 3, 9, tzinfo=ZONE))


def make_series(rng: random.Random, plan: TagPlan) -> list[Pt]:
    ts = T0 + rng.randrange(60_000_000)
    series = []
    for _ in range(POINTS_PER_TAG):
        if plan.value_type == 1:
            value = round(rng.uniform(-20, 20) * 4) / 4  # exact in binary; values repeat
        elif plan.value_type == 2:
            value = float(rng.randint(-2, 6))
        else:
            value = float(rng.random() < 0.5)
        series.append((ts, value, rng.choice((0, 0, 0, 0, 1, 2, 192, -7))))
        ts += rng.choice(GAPS)
    return series


def place(series: list[Pt], instant: int) -> None:
    """Move the point nearest below ``instant`` onto it (keeps the series sorted, unique)."""
    i = bisect_right([p[0] for p in series], instant) - 1
    assert 0 < i < len(series) - 1
    series[i] = (instant, *series[i][1:])


def build_world() -> World:
    rng = random.Random(20240310)
    series = [make_series(rng, plan) for plan in PLANS]
    start = max(s[0][0] for s in series)
    end = min(s[-1][0] for s in series)
    span = end - start

    def at(share: float) -> int:
        return start + int(span * share)

    anchors = {name: at(share) + 123 for name, share in (("a0", 0.06), ("a1", 0.4), ("a2", 0.48))}
    for s in series:
        for instant in anchors.values():
            place(s, instant)
    stored = {p[0] for s in series for p in s}
    between = {}
    for name, share in (("b0", 0.12), ("b1", 0.6), ("b2", 0.69), ("b3", 0.8), ("b4", 0.93)):
        instant = at(share) + 777
        while instant in stored:
            instant += 1
        between[name] = instant
    first = [list(s) for s in series]
    # the duplicates re-sent: 50 a tag, 30 of them with a new value and quality
    resent: list[list[Pt]] = []
    for i, s in enumerate(series):
        picks = sorted(rng.sample(range(POINTS_PER_TAG), 50))
        batch = []
        for n, k in enumerate(picks):
            ts, value, quality = s[k]
            if n % 5 >= 2:
                value = float(1 - value) if PLANS[i].value_type == 3 else value + 1
                quality = 3
                s[k] = (ts, value, quality)
            batch.append((ts, value, quality))
        resent.append(batch)
    return World(series, first, anchors, between, resent, max(s[-1][0] for s in series))


@dataclass
class World:
    series: list[list[Pt]]  # what each tag holds once everything is pushed, oldest first
    first: list[list[Pt]]  # what the first push sends (before 30 a tag are changed)
    anchors: dict[str, int]  # instants where every tag holds a point
    between: dict[str, int]  # instants where no tag holds one, inside every tag's span
    resent: list[list[Pt]]  # re-sent after the first push; the changed ones are in ``series``
    last: int  # the latest point of all


WORLD = build_world()


def time_form(us: int, k: int) -> Any:
    """``us`` in one of the forms the SDK takes, chosen by ``k``."""
    forms: list[Callable[[], Any]] = [
        lambda: us,
        lambda: from_us(us, UTC),
        lambda: from_us(us),
        lambda: from_us(us, timezone(timedelta(hours=5, minutes=45))).isoformat(),
        lambda: naive_local(us),
        lambda: (naive := naive_local(us)) and naive.isoformat(sep=" "),
        lambda: str(us),
    ]
    return forms[k % len(forms)]() or us


def value_form(value: float, plan: TagPlan, k: int) -> Any:
    if plan.value_type == 3:
        return bool(value)
    if plan.value_type == 2:
        return int(value)
    return (value, Decimal(str(value)), int(value) if value.is_integer() else value)[k % 3]


# --- the reference: the documented history rules, naively ------------------------------------


@dataclass(frozen=True)
class Query:
    start: int | None = None
    end: int | None = None
    actual: bool | None = None
    step: int | None = None
    max_count: int | None = None
    values: tuple[float, ...] | None = None

    def refusal(self) -> str | None:
        """The field the server refuses (error 1), by contract, if any."""
        if self.step is not None and (self.start is None or self.end is None):
            return "timeStep"
        if self.step is not None and self.values is not None:
            return "value"
        return None


def value_at(series: list[Pt], times: list[int], instant: int, stepwise: bool) -> Pt | None:
    """The value at ``instant``: held or linear between the neighbours, never extrapolated.

    ``times`` are the instants of ``series``."""
    i = bisect_right(times, instant)
    if i == 0:
        return None
    ts, value, quality = series[i - 1]
    if ts == instant or stepwise:
        return (instant, value, quality)
    if i == len(series):
        return None
    after_ts, after_value, after_quality = series[i]
    share = (instant - ts) / (after_ts - ts)
    return (instant, value + (after_value - value) * share, max(quality, after_quality))


def thin(inside: list[Pt], keep: int) -> list[Pt]:
    """Buckets of equal width over [first, last]; each keeps first, last, lowest, highest."""
    buckets = max(1, keep // 4)
    first, last = inside[0][0], inside[-1][0]
    width = math.ceil((last - first + 1) / buckets)
    groups: dict[int, list[Pt]] = {}
    for p in inside:
        groups.setdefault((p[0] - first) // width, []).append(p)
    picked: set[Pt] = set()
    for group in groups.values():
        lowest = min(group, key=lambda p: (p[1], p[0]))
        highest = min(group, key=lambda p: (-p[1], p[0]))
        picked |= {group[0], group[-1], lowest, highest}
    return sorted(picked)[:keep]


def expected_history(series: list[Pt], stepwise: bool, q: Query) -> tuple[list[Pt], bool]:
    """(points, excess) of one tag, from the module docstring of ``storage.history``."""
    if q.step is not None:
        assert q.start is not None
        assert q.end is not None
        grid = range(q.start, q.end + 1, q.step)
        kept = grid if q.max_count is None else grid[: q.max_count]
        times = [p[0] for p in series]
        found = [value_at(series, times, instant, stepwise) for instant in kept]
        return [p for p in found if p is not None], len(kept) < len(grid)
    matching = [p for p in series if q.values is None or p[1] in q.values]
    if q.start is None and q.end is None:
        return matching[-1:], False
    if q.start is not None and q.end is not None and q.start > q.end:
        return [], False
    inside = [
        p
        for p in matching
        if (q.start is None or p[0] >= q.start) and (q.end is None or p[0] <= q.end)
    ]
    keep = HARD_CAP if q.max_count is None else min(q.max_count, HARD_CAP)
    excess = len(inside) > keep
    if excess:
        inside = thin(inside, keep) if q.max_count is not None else inside[:keep]
    if q.actual or q.values is not None:
        return inside, excess
    stored = {p[0] for p in series}
    at_bounds = [
        value_at(series, sorted(stored), bound, stepwise)
        for bound in dict.fromkeys((q.start, q.end))
        if bound is not None and bound not in stored
    ]
    extra = [p for p in at_bounds if p is not None][: keep - len(inside)]
    return sorted(inside + extra), excess


# --- the stacks ----------------------------------------------------------------------------


class Resources:
    """Databases, in-process apps and servers, made once per module on first use."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.exit = ExitStack()
        self.databases: dict[str, str] = {}
        self.engines: dict[str, Engine] = {}
        self.tokens: dict[str, str] = {}
        self.apps: dict[str, Any] = {}
        self.servers: dict[str, Server] = {}

    def database(self, kind: str, postgres_admin: str | None) -> str:
        if kind not in self.databases:
            if kind == "sqlite":
                url = f"sqlite:///{self.tmp / 'sdk.db'}"
            else:
                assert postgres_admin is not None
                # dropped when the module is done
                url = self.exit.enter_context(contextmanager(fresh_postgres)(postgres_admin))
            upgrade(url)
            self.databases[kind] = url
            self.engines[kind] = engine = create_engine(url)
            self.exit.callback(engine.dispose)
            with engine.begin() as conn:  # the platform needs a token (unless open_ingest)
                admin = create_user(conn, "sdk-admin", "sdk-admin-password", is_admin=True)
                self.tokens[kind] = issue_token(conn, admin.id)
        return self.databases[kind]

    def app(self, kind: str) -> Any:
        if kind not in self.apps:
            settings = Settings(
                database_url=self.databases[kind], collector_enabled=False, timezone=TZ_NAME
            )
            app = create_app(settings)
            self.exit.callback(app.state.engine.dispose)
            self.apps[kind] = app
        return self.apps[kind]

    def server(self, kind: str) -> Server:
        if kind not in self.servers:
            server = Server(
                self.databases[kind],
                self.tmp,
                METERHUB_COLLECTOR_ENABLED="false",
                METERHUB_COMPACT_ENABLED="false",  # the cases count the rows stored
                METERHUB_TIMEZONE=TZ_NAME,
            )
            self.servers[kind] = self.exit.enter_context(server)
        return self.servers[kind]


@pytest.fixture(scope="module")
def resources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Resources]:
    found = Resources(tmp_path_factory.mktemp("sdk"))
    with found.exit:
        yield found


@dataclass
class Stack:
    """One client kind on one transport and database, with its own data source."""

    name: str
    client: Any  # DataInteractionClient | AsyncDataInteractionClient
    raw: Any  # httpx.Client | httpx.AsyncClient, same transport
    runner: asyncio.Runner | None
    engine: Engine  # the same database, read directly
    source: str
    anonymous: Any  # an SDK client as ``client`` but sending no token
    impostor: Any  # an SDK client as ``client`` but sending a token no user has
    tags: list[Tag] = field(default_factory=list)
    written: list[int] = field(default_factory=list)

    def run(self, result: Any) -> Any:
        """The result of a client call: awaited when the client is async."""
        return self.runner.run(result) if self.runner else result

    def connect(self, source: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.run(self.client.connect(source))
        return answer

    def set_data(self, tags: Tag | list[Tag]) -> int:
        written: int = self.run(self.client.set_data(tags))
        return written

    def get_data(self, request: RequestData | None = None, **changes: Any) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = self.run(self.client.get_data(request, **changes))
        return answer

    def http(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response: httpx.Response = self.run(self.raw.request(method, path, **kwargs))
        return response

    def post_raw(self, path: str, content: bytes) -> dict[str, Any]:
        """POST ``content`` as is; the platform's JSON answer (HTTP 200 for errors, but 413
        for a body over the limit, refused before it is read)."""
        response = self.http(
            "POST", path, content=content, headers={"Content-Type": "application/json"}
        )
        expected = 413 if len(content) > Settings.model_fields["max_body_bytes"].default else 200
        assert response.status_code == expected, response.text[:300]
        answer: dict[str, Any] = response.json()
        return answer

    def wire_ids(self) -> list[str | dict[str, str]]:
        return [plan.wire_id(self.source) for plan in PLANS]

    def stored(self) -> tuple[list[list[Pt]], tuple[int, ...]]:
        """Straight from the database: every point of the five tags, and how many points,
        tags and data sources the whole database holds."""
        keys = [f"{self.source}.{plan.name}" for plan in PLANS]
        found: dict[str, list[Pt]] = {key: [] for key in keys}
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT t.key, p.ts, p.value, p.quality FROM points AS p"
                    " JOIN tags AS t ON t.id = p.tag_id WHERE t.source_id = :source"
                    " ORDER BY t.id, p.ts"
                ),
                {"source": self.source},
            )
            for key, ts, value, quality in rows:
                found[key].append((ts, value, quality))
        return [found[key] for key in keys], self.counts()

    def fingerprint(self) -> list[tuple[Any, ...]]:
        """Per tag, worked out by the database: what :func:`fingerprint` gives for its points
        (exact: the values are multiples of 1/4, so every sum is exact in a double)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT count(*), sum(p.ts), min(p.ts), max(p.ts), sum(p.value),"
                    " sum(p.quality), sum((p.ts % 1009) * p.value), sum((p.ts % 997) * p.quality)"
                    " FROM points AS p JOIN tags AS t ON t.id = p.tag_id"
                    " WHERE t.source_id = :source GROUP BY t.id ORDER BY t.id"
                ),
                {"source": self.source},
            )
            return [tuple(int(x) if isinstance(x, Decimal) else x for x in row) for row in rows]

    def counts(self) -> tuple[int, ...]:
        """How many points, tags and data sources the whole database holds."""
        with self.engine.connect() as conn:
            return tuple(
                conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ("points", "tags", "data_sources")
            )

    def read_all(self) -> list[list[Pt]]:
        """Every stored point of the five tags, through the SDK."""
        answer = self.get_data(tag_id=[tag.id for tag in self.tags], from_time=0, actual=True)
        assert [entry["excess"] for entry in answer] == [False] * len(PLANS)
        return [[(p["x"], p["y"], p["q"]) for p in entry["data"]] for entry in answer]


STACKS = [
    pytest.param((db, kind), id=f"{db}-{kind}", marks=[pytest.mark.postgres] * (db == "postgresql"))
    for db in ("sqlite", "postgresql")
    for kind in ("async-asgi", "sync-server", "async-server")
]


MATRIX_STACKS = [param for param in STACKS if str(param.id).endswith("-sync-server")]


@pytest.fixture(scope="module", params=STACKS)
def stack(request: pytest.FixtureRequest, resources: Resources) -> Iterator[Stack]:
    """A client with its data source holding the 10,000 points of ``WORLD``."""
    db, kind = request.param
    admin = request.getfixturevalue("postgres_admin") if db == "postgresql" else None
    resources.database(db, admin)
    source = f"sdk-{kind}"
    headers = {"Authorization": f"token {resources.tokens[db]}"}
    with ExitStack() as exit:
        runner = None if kind == "sync-server" else exit.enter_context(asyncio.Runner())
        if kind == "async-asgi":
            base, app = "http://meterhub.test", resources.app(db)
        else:
            base, app = resources.server(db).url, None

        def clients(headers: dict[str, str]) -> tuple[Any, Any]:
            """An SDK client and a plain httpx client, both sending ``headers``."""
            options: dict[str, Any] = {"timeout": 60, "headers": headers}
            sdk = {"retries": 0, "max_points_per_request": BATCH, **options}
            client: Any
            if runner is None:
                client = exit.enter_context(DataInteractionClient(base, **sdk))
                return client, exit.enter_context(httpx.Client(base_url=base, **options))
            # the plain client gets a crash as a 500 answer, as from a server; the SDK client
            # gets the app's exception itself
            transports = [
                httpx.ASGITransport(app=app, raise_app_exceptions=raise_) if app else None
                for raise_ in (True, False)
            ]
            client = AsyncDataInteractionClient(base, transport=transports[0], **sdk)
            raw = httpx.AsyncClient(base_url=base, transport=transports[1], **options)
            exit.callback(runner.run, client.aclose())
            exit.callback(runner.run, raw.aclose())
            return client, raw

        client, raw = clients(headers)
        anonymous, _ = clients({})
        impostor, _ = clients({"Authorization": "token 1:" + "0" * 40})
        engine = resources.engines[db]
        found = Stack(f"{db}-{kind}", client, raw, runner, engine, source, anonymous, impostor)
        create_source(found, source)
        push_world(found)
        yield found


def create_source(stack: Stack, source: str, plans: tuple[TagPlan, ...] = PLANS) -> None:
    body = {
        "id": source,
        "name": f"SDK test {source}",
        "config": {"poll": 5},
        "tags": [
            {
                "id": plan.wire_id(source),
                "value_type": plan.value_type,
                "unit": "u" + plan.name,
                "attributes": {"line": plan.name},
            }
            for plan in plans
        ],
    }
    created = stack.http("POST", "/api/v1/data-sources/", json=body)
    assert created.status_code == 201, created.text


def push_world(stack: Stack) -> None:
    """Connect and push ``WORLD`` in three rounds; ``stack.written`` gets each round's count."""
    answer = stack.connect(stack.source)
    stack.tags = tags = stack.client.create_tags(answer["tags"])
    rng = random.Random(7)
    # round 1: 1,200 points a tag through add_data, in shuffled order
    orders = [rng.sample(range(POINTS_PER_TAG), POINTS_PER_TAG) for _ in PLANS]
    for tag, plan, series, order in zip(tags, PLANS, WORLD.first, orders, strict=True):
        for k in order[:1200]:
            ts, value, quality = series[k]
            tag.add_data(time_form(ts, k), value_form(value, plan, k), quality)
    stack.written.append(stack.set_data(tags))
    buffered = [len(tag) for tag in tags]
    # round 2: the other 800 a tag through update (one call a tag)
    for tag, plan, series, order in zip(tags, PLANS, WORLD.first, orders, strict=True):
        tag.update(
            {
                "x": time_form(series[k][0], k + 3),
                "y": value_form(series[k][1], plan, k),
                "q": series[k][2],
            }
            for k in sorted(order[1200:])
        )
    stack.written.append(stack.set_data(tags))
    buffered += [len(tag) for tag in tags]
    # round 3: the duplicates, some changed; the first tag alone, the others together
    for tag, plan, batch in zip(tags, PLANS, WORLD.resent, strict=True):
        for k, (ts, value, quality) in enumerate(batch):
            tag.add_data(time_form(ts, k), value_form(value, plan, k), quality)
    stack.written.append(stack.set_data(tags[0]))
    stack.written.append(stack.set_data(tags[1:]))
    buffered += [len(tag) for tag in tags]
    stack.written.append(sum(buffered))  # 0: every acknowledged point left the buffers


# --- connect and push ------------------------------------------------------------------------


def test_connect_gives_the_source_and_its_tags(stack: Stack) -> None:
    answer = stack.connect(stack.source)
    assert answer["error"] == {"id": 0}
    assert answer["attributes"] == {"smtActive": True, "smtJsonConfigString": '{"poll": 5}'}
    assert [tag["id"] for tag in answer["tags"]] == stack.wire_ids()
    for tag, plan in zip(answer["tags"], PLANS, strict=True):
        assert tag["attributes"] == {
            "line": plan.name,
            "smtTagValueTypeCode": plan.value_type,
            "smtTagValueScale": 1.0,
            "smtTagUnit": "u" + plan.name,
        }
    assert stack.tags[2].id == TagId("kW", stack.source)
    assert [tag.wire_id for tag in stack.tags] == stack.wire_ids()


def test_push_10000_points_in_batches_with_upserts(stack: Stack) -> None:
    assert stack.written == [6000, 4000, 50, 200, 0]
    with pytest.raises(NoDataToSend):
        stack.set_data(stack.tags)
    stored = stack.read_all()
    assert sum(len(s) for s in stored) == 10_000
    assert stored == WORLD.series


# --- the read-back matrix ----------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """``from``/``to`` as sent (any SDK time form) and as µs, and a grid step for it."""

    start: Any
    end: Any
    start_us: int | None
    end_us: int | None
    step: int


def _period(start: int | None, end: int | None, form_start: int = 0, form_end: int = 0) -> Period:
    bounded = start is not None and end is not None
    # ~30 instants, off the stored points
    step = max(1, abs((end or 0) - (start or 0)) // 29) + 7 if bounded else 60_000_000
    return Period(
        None if start is None else time_form(start, form_start),
        None if end is None else time_form(end, form_end),
        start,
        end,
        step,
    )


A, B = WORLD.anchors, WORLD.between
PERIODS = {
    # latest value only
    "none": _period(None, None),
    # open end; the start between points (ISO 8601 with a +05:45 offset)
    "from": _period(B["b4"], None, form_start=3),
    # open start; the end on a point every tag holds (naive datetime, server's zone)
    "to": _period(None, A["a0"], form_end=4),
    # from before every point (no value there: never extrapolated) to between points
    "both": _period(T0 - 3_600_000_000, B["b0"], form_start=1, form_end=0),
    # both on stored points (int µs, numeric string)
    "exact": _period(A["a1"], A["a2"], form_start=0, form_end=6),
    # both between points (naive ISO string, aware datetime in the server's zone)
    "between": _period(B["b1"], B["b2"], form_start=5, form_end=2),
    # from after to: an empty period
    "reversed": _period(A["a2"], A["a1"]),
    # after the last point: only the stepwise tag holds a value there
    "after": _period(WORLD.last + 600_000_000, WORLD.last + 7_200_000_000, 4, 3),
    # one instant between points
    "instant": _period(B["b3"], B["b3"], form_start=1, form_end=0),
}
VALUE_FORMS: tuple[Any, ...] = (1, [2.5, 0])
"""``value`` when present: one number, or a list, alternately by period (every tag holds
points with each of these values)."""
MAX_COUNTS = {"none": None, "small": SMALL_MAX_COUNT, "large": LARGE_MAX_COUNT}


@functools.cache
def expected_of(tag: int, q: Query) -> tuple[list[Pt], bool]:
    return expected_history(WORLD.series[tag], PLANS[tag].stepwise, q)


def check_history(
    stack: Stack, answer: list[dict[str, Any]], q: Query, as_iso: bool, label: str
) -> None:
    assert [entry["tagId"] for entry in answer] == stack.wire_ids(), label
    for entry, plan, series in zip(answer, PLANS, WORLD.series, strict=True):
        where = f"{label} tag={plan.name}"
        expected, excess = expected_of(PLANS.index(plan), q)
        got = [(decode_time(p["x"], as_iso, where), p["y"], p["q"]) for p in entry["data"]]
        assert entry["excess"] is excess, where
        assert [(ts, quality) for ts, _, quality in got] == [
            (ts, quality) for ts, _, quality in expected
        ], where
        assert all(
            math.isclose(a[1], b[1], rel_tol=1e-12, abs_tol=1e-9)
            for a, b in zip(got, expected, strict=True)
        ), (where, got, expected)
        if excess and q.step is None and q.max_count is not None and q.max_count >= 4:
            check_thinning(series, got, q, where)


def check_thinning(series: list[Pt], got: list[Pt], q: Query, where: str) -> None:
    """The documented invariants of thinning, whatever the exact bucket rule."""
    assert q.max_count is not None
    assert len(got) <= q.max_count, where
    stored = set(series)
    bounds = {q.start, q.end} - {p[0] for p in series}
    kept = [p for p in got if p[0] not in bounds]
    assert set(kept) <= stored, where
    period = [
        p
        for p in series
        if (q.start is None or p[0] >= q.start)
        and (q.end is None or p[0] <= q.end)
        and (q.values is None or p[1] in q.values)
    ]
    lowest = min(period, key=lambda p: (p[1], p[0]))
    highest = min(period, key=lambda p: (-p[1], p[0]))
    assert {period[0], period[-1], lowest, highest} <= set(kept), where


def decode_time(x: Any, as_iso: bool, where: str) -> int:
    if not as_iso:
        assert type(x) is int, where
        return x
    assert isinstance(x, str), where
    moment = datetime.fromisoformat(x)
    assert moment.utcoffset() == moment.astimezone(ZONE).utcoffset(), (where, x)
    return to_us(moment)


@pytest.mark.parametrize("value", [False, True], ids=["value-absent", "value"])
@pytest.mark.parametrize("max_count", list(MAX_COUNTS), ids=[f"max-{m}" for m in MAX_COUNTS])
@pytest.mark.parametrize("with_step", [False, True], ids=["raw", "step"])
@pytest.mark.parametrize("actual", [None, True, False], ids=["actual-absent", "actual", "stored"])
@pytest.mark.parametrize("period", list(PERIODS))
@pytest.mark.parametrize("stack", MATRIX_STACKS, indirect=True)
def test_read_back_matrix(
    stack: Stack, period: str, actual: bool | None, with_step: bool, max_count: str, value: bool
) -> None:
    """One combination of from/to, actual, timeStep, maxCount and value; format absent and
    true (two requests, the same points)."""
    p = PERIODS[period]
    filter_by = VALUE_FORMS[list(PERIODS).index(period) % 2] if value else None
    q = Query(
        start=p.start_us,
        end=p.end_us,
        actual=actual,
        step=p.step if with_step else None,
        max_count=MAX_COUNTS[max_count],
        values=None
        if filter_by is None
        else tuple(float(v) for v in (filter_by if isinstance(filter_by, list) else [filter_by])),
    )
    request = stack.client.create_request_data(
        tag_id=[tag.id for tag in stack.tags],
        from_time=p.start,
        to_time=p.end,
        max_count=q.max_count,
        time_step=timedelta(microseconds=p.step) if with_step else None,
        value=filter_by,
        actual=actual,
    )
    for as_iso in (None, True):
        label = f"{stack.name} {q} format={as_iso}"
        refused = q.refusal()
        if refused is None:
            answer = stack.get_data(request, format_param=as_iso)
            check_history(stack, answer, q, bool(as_iso), label)
            continue
        with pytest.raises(ServerResponseError) as caught:
            stack.get_data(request, format_param=as_iso)
        assert type(caught.value) is ServerResponseError, label
        assert caught.value.error_id == ErrorCode.BAD_PARAMETER, label
        assert refused in caught.value.message, (label, caught.value.message)


def _edges(period: str, small: set[int], around: tuple[int, ...]) -> list[tuple[str, int]]:
    """(period, maxCount): the ``small`` ones, and each tag's count of stored points in the
    period plus each of ``around``."""
    p = PERIODS[period]
    assert p.start_us is not None
    assert p.end_us is not None
    counts = [sum(p.start_us <= ts <= p.end_us for ts, _, _ in s) for s in WORLD.series]
    return [(period, n) for n in sorted(small | {n + d for n in counts for d in around})]


@pytest.mark.parametrize(
    ("period", "max_count"),
    [*_edges("both", {1, 2, 3, 4, 5, 9}, (0, 1)), *_edges("between", set(), (-1, 0, 1, 2))],
)
def test_max_count_edges(stack: Stack, period: str, max_count: int) -> None:
    """Thinning below 4 (one bucket, cut to the first points), at bucket edges, and where
    the bound values stop fitting: "both" has a value at its end only (nothing precedes its
    start), "between" at both bounds, so with room for one only the start one is added."""
    p = PERIODS[period]
    q = Query(start=p.start_us, end=p.end_us, max_count=max_count)
    answer = stack.get_data(
        tag_id=[tag.id for tag in stack.tags], from_time=p.start, to_time=p.end, max_count=max_count
    )
    check_history(stack, answer, q, False, f"{stack.name} {q}")


def test_single_tag_ids_and_request_data_reuse(stack: Stack) -> None:
    """One tag id in each form (its own, the string key, the pair, a ``Tag``), echoed as
    sent; a ``RequestData`` reused with per-call overrides that leave it as it was."""
    p = PERIODS["between"]
    request = stack.client.create_request_data(
        tag_id=stack.tags[2].id, from_time=p.start, to_time=p.end, actual=True
    )
    for tag, plan, series in zip(stack.tags, PLANS, WORLD.series, strict=True):
        expected, _ = expected_history(series, plan.stepwise, Query(p.start_us, p.end_us, True))
        key = f"{stack.source}.{plan.name}"
        pair = {"tagName": plan.name, "parentObjectId": stack.source}
        for tag_id, echo in (
            (tag.id, tag.wire_id),
            (tag, tag.wire_id),
            (key, key),
            (pair, pair),
            (TagId(plan.name, stack.source), pair),
        ):
            (entry,) = stack.get_data(request, tag_id=tag_id)
            assert entry["tagId"] == echo
            assert [(d["x"], d["y"], d["q"]) for d in entry["data"]] == expected
    assert request.tag_id == stack.tags[2].id
    assert request.from_time == p.start.replace(" ", "T")  # normalised naive ISO
    assert request.actual is True
    request.update(from_time=None, to_time=None, actual=None)
    (entry,) = stack.get_data(request)
    assert [(d["x"], d["y"], d["q"]) for d in entry["data"]] == WORLD.series[2][-1:]


def test_failed_batch_keeps_its_points_and_the_later_ones(stack: Stack) -> None:
    """1,600 points of a tag and one of an unknown tag: the first batch (1,500) is written,
    the second (100 + 1) refused whole and kept buffered; once the unknown tag is dropped,
    the 100 go."""
    source = f"{stack.source}-more"
    create_source(stack, source, (TagPlan("flow", 1),))
    (tag,) = stack.client.create_tags(stack.connect(source)["tags"])
    points = [(T0 + k * 1_000_003, float(k % 11), k % 3) for k in range(1600)]
    tag.update({"x": ts, "y": y, "q": q} for ts, y, q in points)
    stranger = Tag("no.such.tag")
    stranger.add_data(T0, 1)
    with pytest.raises(TagNotFound):
        stack.set_data([tag, stranger])
    assert (len(tag), len(stranger)) == (100, 1)
    assert tag.data == [{"x": ts, "y": y, "q": q} for ts, y, q in points[1500:]]

    def history() -> list[Pt]:
        (entry,) = stack.get_data(tag_id=tag.id, from_time=0, actual=True)
        return [(p["x"], p["y"], p["q"]) for p in entry["data"]]

    assert history() == points[:1500]
    stranger.clear_data()
    assert stack.set_data([tag, stranger]) == 100
    assert history() == points
    assert len(tag) == 0


# --- unknown and inactive sources, unknown tags ----------------------------------------------


def test_unknown_source(stack: Stack) -> None:
    with pytest.raises(DataSourceNotFound) as caught:
        stack.connect("no-such-source")
    assert caught.value.error_id == 2


def test_unknown_tag(stack: Stack) -> None:
    known = stack.tags[0]
    for tag_id in ("no.such.tag", [known.id, "no.such.tag"], TagId("nope", stack.source)):
        with pytest.raises(TagNotFound) as caught:
            stack.get_data(tag_id=tag_id)
        assert caught.value.error_id == 4
    # one request names a known and an unknown tag: nothing of it is written
    stranger = Tag("no.such.tag")
    known.add_data(WORLD.last + 1, 1.0)
    stranger.add_data(WORLD.last + 1, 1.0)
    with pytest.raises(TagNotFound):
        stack.set_data([known, stranger])
    assert (len(known), len(stranger)) == (1, 1)  # still buffered
    known.clear_data()
    assert stack.read_all() == WORLD.series


@dataclass
class OffSource:
    """A data source of two tags, apart from the stack's, each holding ``BEFORE``."""

    stack: Stack
    id: str
    plans: tuple[TagPlan, ...]
    tags: list[Tag]

    def history(self) -> list[list[Pt]]:
        answer = self.stack.get_data(tag_id=[t.id for t in self.tags], from_time=0, actual=True)
        return [[(p["x"], p["y"], p["q"]) for p in entry["data"]] for entry in answer]

    def switch(self, path: str, active: bool) -> None:
        patched = self.stack.http("PATCH", path, json={"active": active})
        assert patched.status_code == 200, patched.text
        assert patched.json()["active"] is active


BEFORE = [(T0 + 1_000_000, 1.5, 0), (T0 + 2_000_000, 0.0, 1)]


def off_source(stack: Stack, suffix: str) -> OffSource:
    source = f"{stack.source}-{suffix}"
    plans = (TagPlan("flow", 1), TagPlan("valve", 3, pair=True))
    create_source(stack, source, plans)
    tags = stack.client.create_tags(stack.connect(source)["tags"])
    for tag in tags:
        tag.update([{"x": ts, "y": y, "q": q} for ts, y, q in BEFORE])
    assert stack.set_data(tags) == 4
    found = OffSource(stack, source, plans, tags)
    assert found.history() == [BEFORE, BEFORE]
    return found


def test_inactive_source(stack: Stack) -> None:
    """Connect answers (error 0, ``smtActive`` false) and the SDK raises
    ``DataSourceNotActive`` from it; writes and reads are error 3, the same exception."""
    off = off_source(stack, "off")
    source, tags = off.id, off.tags
    off.switch(f"/api/v1/data-sources/{source}/", False)
    with pytest.raises(DataSourceNotActive) as refused:  # from smtActive false
        stack.connect(source)
    assert (refused.value.error_id, refused.value.message) == (
        ErrorCode.DATA_SOURCE_NOT_ACTIVE,
        f"data source {source!r} is not active",
    )
    connected = stack.post_raw("/smt/dataSources/connect", json.dumps({"id": source}).encode())
    assert (connected["error"], connected["attributes"]["smtActive"]) == ({"id": 0}, False)
    assert [t["id"] for t in connected["tags"]] == [plan.wire_id(source) for plan in off.plans]
    for tag in tags:
        tag.add_data(T0 + 3_000_000, 7)
    with pytest.raises(DataSourceNotActive) as caught:
        stack.set_data(tags)
    assert (caught.value.error_id, caught.value.message) == (
        3,
        f"data source {source} is not active",
    )
    assert [len(tag) for tag in tags] == [1, 1]  # kept for a later try
    body = {"data": [{"tagId": tags[0].wire_id, "data": [{"x": T0, "y": 1}]}]}
    assert stack.post_raw("/smt/data/set", json.dumps(body).encode())["error"]["id"] == 3
    with pytest.raises(DataSourceNotActive):
        off.history()
    with pytest.raises(DataSourceNotActive):
        stack.get_data(tag_id=tags[1].id)  # the latest value

    off.switch(f"/api/v1/data-sources/{source}/", True)
    assert off.history() == [BEFORE, BEFORE]  # unchanged
    assert stack.connect(source)["attributes"]["smtActive"] is True
    assert stack.set_data(tags) == 2
    after = [*BEFORE, (T0 + 3_000_000, 7, 0)]
    assert off.history() == [after, after]
    assert stack.read_all() == WORLD.series


def test_inactive_tag(stack: Stack) -> None:
    """An inactive tag of an active source: not offered by connect, refuses writes and reads."""
    off = off_source(stack, "tag-off")
    key = f"{off.id}.flow"
    off.switch(f"/api/v1/tags/{key}/", False)
    connected = stack.connect(off.id)
    assert [t["id"] for t in connected["tags"]] == [off.plans[1].wire_id(off.id)]
    off.tags[0].add_data(T0 + 4_000_000, 8)
    with pytest.raises(DataSourceNotActive) as caught:
        stack.set_data(off.tags[0])
    assert caught.value.message == f"tag {key} is not active"
    for read in (off.history, lambda: stack.get_data(tag_id=key)):
        with pytest.raises(DataSourceNotActive) as caught:
            read()
        assert caught.value.message == f"tag {key} is not active"
    off.switch(f"/api/v1/tags/{key}/", True)
    off.tags[0].clear_data()
    assert off.history() == [BEFORE, BEFORE]
    assert stack.read_all() == WORLD.series


def test_without_a_valid_token_the_sdk_raises_an_authentication_error(stack: Stack) -> None:
    """``open_ingest`` is off: a call without a token, or with one the platform refuses, is
    HTTP 401 with error 9, which the SDK raises as ``AuthenticationError`` naming the
    problem; the points of a refused ``set_data`` stay buffered."""
    tag = Tag(stack.tags[0].id)
    tag.add_data(WORLD.last + 1, 1.0)

    def refusal(call: Callable[[], Any]) -> Any:
        return outcome(lambda: stack.run(call()))

    for client, token_sent, problem in (
        (stack.anonymous, False, "no token sent"),
        (stack.impostor, True, "token refused"),
    ):
        for error in (
            refusal(functools.partial(client.connect, stack.source)),
            refusal(functools.partial(client.set_data, tag)),
            refusal(functools.partial(client.get_data, tag_id=tag.id)),
        ):
            assert isinstance(error, AuthenticationError), repr(error)
            assert (error.error_id, error.status_code) == (ErrorCode.NOT_AUTHENTICATED, 401)
            assert error.token_sent is token_sent
            assert error.message
            assert str(error).startswith(f"{problem}"), str(error)
    assert len(tag) == 1
    assert stack.read_all() == WORLD.series


# --- malformed requests: each its own error id, nothing stored changes -----------------------

FIRST = WORLD.series[0]


def good_records(ids: list[Any]) -> list[dict[str, Any]]:
    """Records that would add a point and change one if a request were (partly) applied."""
    return [
        {"tagId": ids[0], "data": [{"x": WORLD.last + 5, "y": 5, "q": 0}]},
        {"tagId": ids[2], "data": [{"x": WORLD.series[2][10][0], "y": 999.5, "q": 9}]},
    ]


BAD_POINTS: dict[str, tuple[dict[str, Any] | Any, int]] = {
    "x-text": ({"x": "yesterday", "y": 1}, 5),
    "x-impossible-date": ({"x": "2024-02-30T10:00:00", "y": 1}, 5),
    "x-float": ({"x": 1.7e15, "y": 1}, 5),
    "x-bool": ({"x": True, "y": 1}, 5),
    "x-null": ({"x": None, "y": 1}, 5),
    "x-list": ({"x": [1], "y": 1}, 5),
    "x-empty": ({"x": "", "y": 1}, 5),
    "y-text": ({"x": FIRST[5][0], "y": "12"}, 6),
    "y-null": ({"x": FIRST[5][0], "y": None}, 6),
    "y-bool": ({"x": FIRST[5][0], "y": True}, 6),
    "y-object": ({"x": FIRST[5][0], "y": {"v": 1}}, 6),
    "y-nan": ({"x": FIRST[5][0], "y": math.nan}, 6),
    "y-infinity": ({"x": FIRST[5][0], "y": -math.inf}, 6),
    "y-overflow": ({"x": FIRST[5][0], "y": "OVERFLOW"}, 6),
    "q-float": ({"x": FIRST[5][0], "y": 1, "q": 0.5}, 1),
    "q-too-big": ({"x": FIRST[5][0], "y": 1, "q": 40_000}, 1),
    "q-text": ({"x": FIRST[5][0], "y": 1, "q": "0"}, 1),
    "q-bool": ({"x": FIRST[5][0], "y": 1, "q": True}, 1),
    "point-not-object": (5, 1),
    "point-without-y": ({"x": FIRST[5][0]}, 1),
    "x-beyond-int64": ({"x": 2**63, "y": 1}, 5),
    "x-numeric-text-beyond-int64": ({"x": str(2**70), "y": 1}, 5),
    "y-integer-beyond-float": ({"x": FIRST[5][0], "y": "HUGE"}, 6),
}


def _set_body(ids: list[Any], records: list[Any], **extra: Any) -> bytes:
    text = json.dumps({"data": [*good_records(ids), *records], **extra})
    return text.replace('"OVERFLOW"', "1e999").replace('"HUGE"', "1" + "0" * 400).encode()


def _bad_point(point: Any) -> Callable[[list[Any]], bytes]:
    return lambda ids: _set_body(ids, [{"tagId": ids[1], "data": [point]}])


SET_CASES: dict[str, tuple[Callable[[list[Any]], bytes], int]] = {
    **{name: (_bad_point(point), err) for name, (point, err) in BAD_POINTS.items()},
    "record-without-tagId": (lambda ids: _set_body(ids, [{"data": []}]), 1),
    "record-not-object": (lambda ids: _set_body(ids, ["flow"]), 1),
    "record-data-not-list": (
        lambda ids: _set_body(ids, [{"tagId": ids[1], "data": {"x": 1, "y": 1}}]),
        1,
    ),
    "tagId-number": (lambda ids: _set_body(ids, [{"tagId": 5, "data": []}]), 1),
    "tagId-half-pair": (lambda ids: _set_body(ids, [{"tagId": {"tagName": "kW"}, "data": []}]), 1),
    "tagId-unknown": (lambda ids: _set_body(ids, [{"tagId": "no.such.tag", "data": []}]), 4),
    "params-not-object": (lambda ids: _set_body(ids, [], params=[1]), 1),
    "no-data": (lambda ids: b"{}", 1),
    "not-json": (lambda ids: b'{"data": [', 1),
    "body-an-array": (lambda ids: json.dumps(good_records(ids)).encode(), 1),
    "body-over-8MiB": (lambda ids: _set_body(ids, [], pad="x" * (8 * MiB)), 7),
    "over-200000-points": (
        lambda ids: _set_body(
            ids, [{"tagId": ids[1], "data": [{"x": i, "y": 0} for i in range(200_001)]}]
        ),
        7,
    ),
}


def good_params(ids: list[Any]) -> dict[str, Any]:
    return {"tagId": ids, "from": WORLD.anchors["a1"], "to": WORLD.anchors["a2"]}


GET_CASES: dict[str, tuple[dict[str, Any], int]] = {
    "from-text": ({"from": "soon"}, 5),
    "from-bool": ({"from": True}, 5),
    "from-float": ({"from": 1.5e15}, 5),
    "to-list": ({"to": [1]}, 5),
    "to-null": ({"to": None}, 5),
    "to-impossible-date": ({"to": "2024-13-01"}, 5),
    "to-beyond-int64": ({"to": 2**63}, 5),
    "from-below-int64": ({"from": -(2**63) - 1}, 5),
    "maxCount-zero": ({"maxCount": 0}, 1),
    "maxCount-negative": ({"maxCount": -3}, 1),
    "maxCount-text": ({"maxCount": "ten"}, 1),
    "maxCount-bool": ({"maxCount": True}, 1),
    "maxCount-float": ({"maxCount": 2.5}, 1),
    "timeStep-zero": ({"timeStep": 0}, 1),
    "timeStep-negative": ({"timeStep": -60}, 1),
    "timeStep-text": ({"timeStep": "1m"}, 1),
    "timeStep-without-to": ({"timeStep": 60_000_000, "to": "DROP"}, 1),
    "timeStep-without-bounds": ({"timeStep": 60_000_000, "from": "DROP", "to": "DROP"}, 1),
    "timeStep-with-value": ({"timeStep": 60_000_000, "value": 1}, 1),
    "timeStep-grid-over-cap": ({"timeStep": 1}, 1),
    "value-text": ({"value": "abc"}, 6),
    "value-nan-text": ({"value": "nan"}, 6),
    "value-null": ({"value": None}, 6),
    "value-bool": ({"value": True}, 6),
    "value-object": ({"value": {}}, 6),
    "value-list-with-text": ({"value": [1, "x"]}, 6),
    "value-integer-beyond-float": ({"value": "HUGE"}, 6),
    "format-text": ({"format": "maybe"}, 1),
    "format-null": ({"format": None}, 1),
    "actual-number": ({"actual": 2}, 1),
    "unknown-parameter": ({"limit": 5}, 1),
    "no-tagId": ({"tagId": "DROP"}, 1),
    "tagId-empty": ({"tagId": ""}, 1),
    "tagId-number": ({"tagId": 5}, 1),
    "tagId-with-slash": ({"tagId": "a/b"}, 1),
    "tagId-list-with-null": ({"tagId": ["DROP-LIST"]}, 1),
    "tagId-unknown": ({"tagId": ["no.such.tag"]}, 4),
}
GET_BODIES: dict[str, tuple[Callable[[list[Any]], bytes], int]] = {
    "params-not-object": (lambda ids: b'{"params": [1]}', 1),
    "not-json": (lambda ids: b'{"params": {', 1),
    "body-over-8MiB": (
        lambda ids: json.dumps({"params": good_params(ids), "pad": "x" * (8 * MiB)}).encode(),
        7,
    ),
}
CONNECT_CASES: dict[str, tuple[bytes, int]] = {
    "no-id": (b"{}", 1),
    "id-list": (b'{"id": ["a"]}', 1),
    "id-object": (b'{"id": {"a": 1}}', 1),
    "id-bool": (b'{"id": true}', 1),
    "id-unknown": (b'{"id": "no-such-source"}', 2),
    "not-json": (b"{", 1),
    "body-an-array": (b"[]", 1),
    "body-over-8MiB": (b'{"id": "x", "pad": "' + b"x" * (8 * MiB) + b'"}', 7),
}


def _get_body(ids: list[Any], change: dict[str, Any]) -> bytes:
    params = good_params(ids)
    for key, value in change.items():
        if value == "DROP":
            params.pop(key)
        elif value == ["DROP-LIST"]:
            params[key] = [ids[0], None]
        else:
            params[key] = value
    return json.dumps({"params": params}).replace('"HUGE"', "1" + "0" * 400).encode()


def fingerprint(series: list[Pt]) -> tuple[Any, ...]:
    """Count, sum/min/max of times, sums of values and qualities, and two mixed sums: any
    point added, removed, moved or changed changes it."""
    return (
        len(series),
        sum(ts for ts, _, _ in series),
        series[0][0],
        series[-1][0],
        sum(value for _, value, _ in series),
        sum(quality for _, _, quality in series),
        sum((ts % 1009) * value for ts, value, _ in series),
        sum((ts % 997) * quality for ts, _, quality in series),
    )


WORLD_FINGERPRINT = [fingerprint(series) for series in WORLD.series]


def assert_refused(stack: Stack, path: str, body: bytes, error_id: int) -> None:
    """Refused with ``error_id``, and nothing stored changed: the database holds as many
    points, tags and sources as before, and the source's points as pushed (their
    fingerprint, worked out by the database; every point is compared at the end, in
    ``test_everything_still_as_pushed``: 10,000 points after each of ~80 cases would cost
    5 s a stack)."""
    counts = stack.counts()
    answer = stack.post_raw(path, body)
    assert answer["error"]["id"] == error_id, answer
    assert isinstance(answer["error"]["message"], str)
    assert answer["error"]["message"]
    assert set(answer) == {"error"}, answer
    assert stack.counts() == counts
    assert stack.fingerprint() == WORLD_FINGERPRINT


@pytest.mark.parametrize("case", list(SET_CASES))
def test_malformed_set_data(stack: Stack, case: str) -> None:
    build, error_id = SET_CASES[case]
    assert_refused(stack, "/smt/data/set", build(stack.wire_ids()), error_id)


@pytest.mark.parametrize("case", [*GET_CASES, *GET_BODIES])
def test_malformed_get_data(stack: Stack, case: str) -> None:
    ids = stack.wire_ids()
    if case in GET_CASES:
        change, error_id = GET_CASES[case]
        body = _get_body(ids, change)
        if case == "timeStep-grid-over-cap":
            body = _get_body(ids, {"from": 0, "to": HARD_CAP, "timeStep": 1})
    else:
        build, error_id = GET_BODIES[case]
        body = build(ids)
    assert_refused(stack, "/smt/data/get", body, error_id)


@pytest.mark.parametrize("case", list(CONNECT_CASES))
def test_malformed_connect(stack: Stack, case: str) -> None:
    body, error_id = CONNECT_CASES[case]
    assert_refused(stack, "/smt/dataSources/connect", body, error_id)


@pytest.mark.parametrize(
    ("changes", "field_name"),
    [
        ({"time_step": 60_000_000, "to_time": None}, "timeStep"),
        ({"time_step": 60_000_000, "from_time": None, "to_time": None}, "timeStep"),
        ({"time_step": 60_000_000, "value": 1}, "value"),
        ({"time_step": 1, "from_time": 0, "to_time": HARD_CAP}, "timeStep"),
    ],
    ids=["step-without-to", "step-without-bounds", "step-with-value", "grid-over-cap"],
)
def test_refused_by_the_server_through_the_sdk(
    stack: Stack, changes: dict[str, Any], field_name: str
) -> None:
    """What the SDK sends but the platform's contract refuses: error 1 naming the field."""
    request = stack.client.create_request_data(
        tag_id=[tag.id for tag in stack.tags], from_time=A["a1"], to_time=A["a2"]
    )
    with pytest.raises(ServerResponseError) as caught:
        stack.get_data(request, **changes)
    assert caught.value.error_id == ErrorCode.BAD_PARAMETER
    assert field_name in caught.value.message
    assert stack.read_all() == WORLD.series


@pytest.mark.parametrize("step", [2**63, 10**30], ids=["2**63", "10**30"])
def test_time_step_larger_than_the_period(stack: Stack, step: int) -> None:
    """A step longer than the period is a grid of one instant, ``from`` (the SDK sends any
    positive int step)."""
    start, end = A["a1"], A["a2"]
    q = Query(start=start, end=end, step=step)
    result = outcome(
        lambda: stack.get_data(
            tag_id=[tag.id for tag in stack.tags], from_time=start, to_time=end, time_step=step
        )
    )
    assert not isinstance(result, Exception), repr(result)
    check_history(stack, result, q, False, f"{stack.name} {q}")


def test_a_point_accepted_can_be_read_with_format(stack: Stack) -> None:
    """x = 2**62 µs (year ~148,000) is in the SDK's range; once the platform takes it, a
    ``format: true`` read of it must work (refusing it with error 5 would do too)."""
    source = f"{stack.source}-far"
    create_source(stack, source, (TagPlan("flow", 1),))
    (tag,) = stack.client.create_tags(stack.connect(source)["tags"])
    tag.add_data(2**62, 1.5)
    sent = outcome(lambda: stack.set_data(tag))
    if isinstance(sent, ServerResponseError) and sent.error_id == ErrorCode.BAD_TIME:
        return
    assert sent == 1, repr(sent)
    (entry,) = stack.get_data(tag_id=tag.id)
    assert entry["data"] == [{"x": 2**62, "y": 1.5, "q": 0}]
    answer = outcome(lambda: stack.get_data(tag_id=tag.id, format_param=True))
    assert not isinstance(answer, Exception), repr(answer)


def outcome(call: Callable[[], Any]) -> Any:
    """What ``call`` returns, or the exception it raised (in-process, the app's own)."""
    try:
        return call()
    except Exception as exc:
        return exc


def test_grid_over_cap_cut_by_max_count(stack: Stack) -> None:
    """A grid over the hard cap is served when maxCount cuts it (rule 5)."""
    start = WORLD.anchors["a1"]
    q = Query(start=start, end=start + HARD_CAP, step=1, max_count=50)
    answer = stack.get_data(
        tag_id=[tag.id for tag in stack.tags],
        from_time=start,
        to_time=start + HARD_CAP,
        time_step=1,
        max_count=50,
    )
    check_history(stack, answer, q, False, f"{stack.name} {q}")


def test_sdk_refuses_bad_input_before_sending(stack: Stack) -> None:
    tag = stack.tags[0]
    bad: list[tuple[Any, Any]] = [("yesterday", 1), (1.5, 1), (True, 1), (T0, "12")]
    for x, y in [*bad, (T0, math.nan), (T0, None)]:
        with pytest.raises(ValueError, match="bad"):
            tag.add_data(x, y)
    with pytest.raises(ValueError, match="bad point #1"):
        tag.update([{"x": T0, "y": 1}, {"x": T0, "y": math.inf}])
    assert len(tag) == 0
    with pytest.raises(ValueError, match="max_count"):
        stack.client.create_request_data(tag_id=tag.id, max_count=0)
    with pytest.raises(ValueError, match="time_step"):
        stack.client.create_request_data(tag_id=tag.id, time_step=-1)


def test_everything_still_as_pushed(stack: Stack) -> None:
    """After every test above on this stack, through the SDK and in the database."""
    assert stack.read_all() == WORLD.series
    assert stack.stored()[0] == WORLD.series
