"""Project pages: the projects list, one project, and its bills (filters, paging, totals,
CSV), through the real app on both databases."""

from __future__ import annotations

import csv
import html
import io
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine

from meterhub.billing.history import Bill, BillFilter, iter_bills
from meterhub.billing.runs import run_task
from meterhub.billing.tariff_store import set_tariff
from meterhub.billing.tariffs import Tariff
from meterhub.billing.tasks import create_task
from meterhub.registry.channels import DeviceType
from meterhub.registry.devices import channel_tags, create_device, get_device
from meterhub.registry.projects import assign_device, create_house, create_project
from meterhub.registry.users import create_user
from meterhub.storage import Point, write_points
from meterhub.times import from_us, to_us
from tests.web.conftest import Dashboard, log_in

BERLIN = ZoneInfo("Europe/Berlin")
MONTHLY = {"month": "*", "day": "1", "hour": "0", "minute": "0"}
ADDRESS = ["安心e家", "1", "", "301", "空调房"]
PEOPLE = [("卢博腾", "13336915622"), ("高帅", "13336919098")]
UNITS = {"electricity": "kWh", "water": "m³"}


@dataclass(frozen=True, slots=True)
class Estate:
    project: int
    other: int
    house: int
    tasks: dict[DeviceType, str]


def month_start(month: int) -> int:
    """µs of local midnight on the first of ``month`` 2026 in Berlin."""
    return to_us(datetime(2026, month, 1), BERLIN)


def _read(conn: Connection, device_id: str, channel: str, values: list[float | None]) -> None:
    """Readings at the start of January, February... (``None``: not read that month)."""
    tag = channel_tags(conn, get_device(conn, device_id).pk)[channel]
    found = [Point(tag, month_start(i + 1), v) for i, v in enumerate(values) if v is not None]
    write_points(conn, found)


def build_estate(engine: Engine, months: int) -> Estate:
    """Berlin project "Estate": one house with E1 (electricity), W1 (tap), W2 (purified) read at
    local midnight on the first of ``months`` months of 2026 (W2 not in the last month, so its
    last bill holds its reading, estimated), and E9 never read; an empty second house;
    tariffs for all three; a monthly task per type, not run. Shanghai project "Elsewhere":
    one house with meter X1."""
    with engine.begin() as conn:
        project = create_project(conn, "Estate", "Europe/Berlin", "CNY")
        other = create_project(conn, "Elsewhere", "Asia/Shanghai", "USD")
        house = create_house(conn, project.id, ADDRESS, PEOPLE)
        create_house(conn, project.id, ["安心e家", "2", "", "", ""])
        meters = [
            ("E1", DeviceType.ELECTRICITY, None),
            ("W1", DeviceType.WATER, "tap"),
            ("W2", DeviceType.WATER, "purified"),
            ("E9", DeviceType.ELECTRICITY, None),
        ]
        for device_id, kind, water_kind in meters:
            create_device(conn, device_id, kind)
            assign_device(conn, device_id, house, water_kind)
        create_device(conn, "X1", DeviceType.WATER)
        assign_device(conn, "X1", create_house(conn, other.id, ["b", "", "", "", ""]), "tap")
        set_tariff(
            conn,
            project.id,
            DeviceType.ELECTRICITY,
            Tariff.tiered([(Decimal(100), Decimal("0.55")), (None, Decimal("0.80"))]),
        )
        set_tariff(conn, project.id, DeviceType.WATER, Tariff.flat(Decimal("3.20")), "tap")
        fixed = Decimal("5.00")
        set_tariff(conn, project.id, DeviceType.WATER, Tariff.flat(Decimal(8), fixed), "purified")
        _read(conn, "E1", "kW", [1000 + 127.58 * i + 0.125 * i * i for i in range(months)])
        _read(conn, "W1", "V", [10.5 + 12.25 * i for i in range(months)])
        _read(conn, "W2", "V", [5 + 2.5 * i for i in range(months - 1)])
        tasks = {
            kind: create_task(conn, project.id, f"monthly {kind}", kind, MONTHLY).key
            for kind in DeviceType
        }
    return Estate(project.id, other.id, house, tasks)


def bill_months(engine: Engine, estate: Estate, months: range) -> list[Bill]:
    """Run both tasks for the ends of ``months``; the project's bills, newest first."""
    with engine.begin() as conn:
        for month in months:
            for key in estate.tasks.values():
                run_task(conn, key, month_start(month))
        return list(iter_bills(conn, BillFilter(estate.project)))


# --- reading pages -------------------------------------------------------------------------


class _Tables(HTMLParser):
    """The text of every cell of every table, by table id, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(re.sub(r"[ \t\r\n]+", " ", "".join(self._cell)).strip())
            self._cell = None
        elif tag == "tr" and self._table is not None and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table(html: str, table_id: str) -> list[list[str]]:
    """The rows of a table below its header row; ``[]`` when the page has no such table."""
    parser = _Tables()
    parser.feed(html)
    return parser.tables.get(table_id, [[]])[1:]


def shown(value: Decimal | int, decimals: int) -> str:
    """A number as pages show it: thin-space thousands, fixed decimals."""
    return f"{value:,.{decimals}f}".replace(",", "\u2009")


def local(us: int) -> str:
    return from_us(us, BERLIN).strftime("%Y-%m-%d %H:%M")


def api_headers(client: Dashboard) -> dict[str, str]:
    """The session's token as an API credential."""
    return {"Authorization": f"token {client.cookies['meterhub_session']}"}


def user_of(client: Dashboard, engine: Engine, projects: list[int]) -> Dashboard:
    """A new client, logged in as a user who is granted only ``projects``."""
    with engine.begin() as conn:
        create_user(conn, "resident", "long enough", project_ids=projects)
    other = Dashboard(client.app, follow_redirects=False)
    log_in(other, "resident", "long enough")
    return other


def bill_row(bill: Bill) -> list[str]:
    kind = bill.device_type.value
    return [
        bill.device_id,
        f"{kind}, {bill.water_kind}" if bill.water_kind else kind,
        local(bill.from_time),
        local(bill.to_time),
        shown(bill.previous_reading, 3),
        shown(bill.reading, 3),
        "estimated" if bill.estimated else "measured",
        f"{shown(bill.consumption, 3)} {UNITS[kind]}",
        f"{shown(bill.charge, 2)} CNY",
        " / ".join(part for part in bill.house_address if part),
    ]


# --- projects -------------------------------------------------------------------------------


def test_the_list_shows_each_project_with_its_houses_and_meters(
    dashboard: Dashboard, engine: Engine
) -> None:
    estate = build_estate(engine, 1)
    page = dashboard.get("/projects")
    assert page.status_code == 200
    assert 'aria-current="page">Projects' in page.text
    assert table(page.text, "projects") == [
        ["Estate", "Europe/Berlin", "CNY", "2", "4", "0", "Bills Billing tasks"],
        ["Elsewhere", "Asia/Shanghai", "USD", "1", "1", "0", "Bills Billing tasks"],
    ]
    assert f'href="/projects/{estate.project}/bills"' in page.text


def test_a_project_shows_houses_residents_meters_and_tariffs(
    dashboard: Dashboard, engine: Engine
) -> None:
    estate = build_estate(engine, 1)
    page = dashboard.get(f"/projects/{estate.project}")
    assert page.status_code == 200
    assert table(page.text, "house-table") == [
        [
            "安心e家 / 1 / — / 301 / 空调房",
            "卢博腾 13336915622 高帅 13336919098",
            "E1 electricity E9 electricity W1 water, tap W2 water, purified",
        ],
        ["安心e家 / 2 / — / — / —", "none", "none"],
    ]
    for device_id in ("E1", "E9", "W1", "W2"):
        assert f'<a href="/meters/{device_id}">{device_id}</a>' in page.text
    assert "X1" not in page.text
    assert table(page.text, "tariff-table") == [
        [
            "electricity",
            "—",
            "up to 100 kWh: 0.55 CNY/kWh; above 100 kWh: 0.80 CNY/kWh",
            "0.00 CNY",
        ],
        ["water", "purified", "8.00 CNY/m³", "5.00 CNY"],
        ["water", "tap", "3.20 CNY/m³", "0.00 CNY"],
    ]


def test_a_user_sees_only_the_projects_granted(dashboard: Dashboard, engine: Engine) -> None:
    estate = build_estate(engine, 3)
    bill_months(engine, estate, range(2, 4))
    resident = user_of(dashboard, engine, [estate.other])
    assert [row[0] for row in table(resident.get("/projects").text, "projects")] == ["Elsewhere"]
    assert resident.get(f"/projects/{estate.other}").status_code == 200
    assert resident.get(f"/projects/{estate.other}/bills").status_code == 200
    for tail in ("", "/bills", "/bills.csv", "/bills?device_type=gas"):
        for project_id in (estate.project, 2_147_483_648):
            answer = resident.get(f"/projects/{project_id}{tail}")
            assert answer.status_code == 404, tail
            assert f"no project with id {project_id}" in answer.text
            assert "Estate" not in answer.text
    assert dashboard.get("/projects/nine").status_code == 400


# --- bills ----------------------------------------------------------------------------------


def test_bills_show_what_is_stored_with_totals_per_period(
    dashboard: Dashboard, engine: Engine
) -> None:
    estate = build_estate(engine, 3)
    bills = bill_months(engine, estate, range(2, 4))
    assert len(bills) == 6
    page = dashboard.get(f"/projects/{estate.project}/bills")
    assert page.status_code == 200
    assert "Times in Europe/Berlin, the project's timezone," in page.text
    assert table(page.text, "bills") == [bill_row(bill) for bill in bills]
    assert [(b.device_id, b.to_time) for b in bills if b.estimated] == [("W2", month_start(3))]

    sums: dict[tuple[int, str], list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 3)
    for bill in bills:
        for key in ((bill.to_time, bill.device_type.value), (0, bill.device_type.value)):
            sums[key][0] += 1
            sums[key][1] += bill.consumption
            sums[key][2] += bill.charge
    expected = [
        [
            local(end) if end else "All periods",
            kind,
            shown(count, 0),
            f"{shown(used, 3)} {UNITS[kind]}",
            f"{shown(charge, 2)} CNY",
        ]
        for (end, kind), (count, used, charge) in sorted(
            sums.items(), key=lambda item: (item[0][0] == 0, -item[0][0], item[0][1])
        )
    ]
    assert table(page.text, "period-totals") == expected
    api = dashboard.get(
        "/api/v1/scheduler/history/",
        params={"project_id": estate.project, "page_size": 100},
        headers=api_headers(dashboard),
    ).json()["data"]["results"]
    assert [(b["device_id"], b["charge"]) for b in api] == [
        (bill.device_id, str(bill.charge)) for bill in bills
    ]


FILTERS = [
    ("device_type=water", {"W1", "W2"}),
    ("device_type=electricity", {"E1"}),
    ("water_kind=tap", {"E1", "W1"}),
    ("water_kind=%E7%BA%AF%E5%87%80%E6%B0%B4%E8%A1%A8", {"E1", "W2"}),  # 纯净水表
    ("device_id=W2", {"W2"}),
    ("device_id=W2&device_type=electricity", set()),
]


def test_filters_narrow_the_bills_their_totals_and_the_csv(
    dashboard: Dashboard, engine: Engine
) -> None:
    estate = build_estate(engine, 3)
    bills = bill_months(engine, estate, range(2, 4))
    for query, expected in FILTERS:
        page = dashboard.get(f"/projects/{estate.project}/bills?{query}")
        assert page.status_code == 200
        rows = table(page.text, "bills")
        assert rows == [bill_row(bill) for bill in bills if bill.device_id in expected], query
        charges = [Decimal(row[4].split()[0]) for row in table(page.text, "period-totals")]
        total = sum(bill.charge for bill in bills if bill.device_id in expected)
        assert sum(charges) == 2 * total  # each period once, and once more in "All periods"
        link = re.search(r'href="(/projects/\d+/bills\.csv[^"]*)"', page.text)
        assert link is not None
        exported = csv.DictReader(io.StringIO(dashboard.get(html.unescape(link[1])).text))
        assert [row["device_id"] for row in exported] == [row[0] for row in rows], query


def test_a_date_window_keeps_bills_whose_period_ends_in_it(
    dashboard: Dashboard, engine: Engine
) -> None:
    estate = build_estate(engine, 4)
    bills = bill_months(engine, estate, range(2, 5))
    url = f"/projects/{estate.project}/bills"
    for query, months in (
        ("start_date=2026-03-01&end_date=2026-03-01", {3}),
        ("start_date=2026-2-2", {3, 4}),
        ("end_date=2026-03-31", {2, 3}),
        ("start_date=2026-03-02&end_date=2026-03-31", set()),
    ):
        rows = table(dashboard.get(f"{url}?{query}").text, "bills")
        ends = {month_start(month) for month in months}
        assert rows == [bill_row(b) for b in bills if b.to_time in ends], query


def test_pages_of_bills_cover_every_bill_once(dashboard: Dashboard, engine: Engine) -> None:
    estate = build_estate(engine, 10)
    bills = bill_months(engine, estate, range(2, 11))
    assert len(bills) == 27
    url = f"/projects/{estate.project}/bills?device_id=&size=25"
    first, second = (table(dashboard.get(f"{url}&page={n}").text, "bills") for n in (1, 2))
    assert (len(first), len(second)) == (25, 2)
    assert first + second == [bill_row(bill) for bill in bills]
    beyond = dashboard.get(f"{url}&page=9").text
    assert table(beyond, "bills") == second
    assert "26\u201327 of 27" in beyond
    assert f'href="/projects/{estate.project}/bills?device_id=&amp;page=1&amp;size=25"' in beyond
    assert len(table(dashboard.get(f"{url}&size=50").text, "bills")) == 27
    exported = dashboard.get(f"/projects/{estate.project}/bills.csv")
    assert len(list(csv.DictReader(io.StringIO(exported.text)))) == 27
    refused = dashboard.get(f"{url}&page=two")
    assert refused.status_code == 400
    assert "invalid input: page" in refused.text


def test_the_csv_equals_the_api_export_of_the_same_filter(
    dashboard: Dashboard, engine: Engine
) -> None:
    estate = build_estate(engine, 3)
    bill_months(engine, estate, range(2, 4))
    year = "start_date=2026-1-1&end_date=2026-12-31"
    for web, api in (
        ("", f"device_type=10&{year}"),
        ("device_type=water&water_kind=tap", f"device_type=1&wm_type=tap&{year}"),
        ("device_type=electricity&device_id=E1", f"device_type=0&device_id=E1&{year}"),
        ("start_date=2026-3-1&end_date=2026-3-1", "start_date=2026-3-1&end_date=2026-3-1"),
    ):
        theirs = dashboard.get(
            f"/api/v1/scheduler/history/export.csv?project_id={estate.project}&{api}",
            headers=api_headers(dashboard),
        )
        ours = dashboard.get(f"/projects/{estate.project}/bills.csv?{web}")
        assert ours.status_code == theirs.status_code == 200
        assert ours.headers["content-type"] == "text/csv; charset=utf-8"
        assert ours.headers["content-disposition"] == (
            f'attachment; filename="bills-{estate.project}.csv"'
        )
        assert ours.content == theirs.content, web
        assert len(ours.text.splitlines()) > 2, web


def test_bad_filters_are_400_naming_the_field(dashboard: Dashboard, engine: Engine) -> None:
    estate = build_estate(engine, 1)
    for query, field in (
        ("device_type=gas", "device_type"),
        ("water_kind=hot", "water_kind"),
        ("start_date=2026-13-01", "start_date"),
        ("end_date=yesterday", "end_date"),
        ("start_date=2026-03-02&end_date=2026-03-01", "end_date"),
    ):
        for tail in ("bills", "bills.csv"):
            answer = dashboard.get(f"/projects/{estate.project}/{tail}?{query}")
            assert answer.status_code == 400, (tail, query)
            assert "Invalid input" in answer.text
            assert f"<code>{field}</code>" in answer.text
