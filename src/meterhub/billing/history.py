"""Bill history: the queries behind bill lists, date-range reports and CSV exports.

Bills come newest first (period end, then id, descending). Readings and consumption keep the
three decimals they are stored with, money its two; house and residents are the snapshot taken
when the bill was made, so later edits of the house do not rewrite old bills.

``iter_bills`` reads in keyset chunks, so an export of any size never holds more than one chunk.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, func, or_, select

from meterhub.billing.consumption import REGISTER_STEP
from meterhub.billing.tables import bill_items, bills
from meterhub.billing.tariffs import CENT
from meterhub.billing.tou_items import Item
from meterhub.errors import InvalidInput
from meterhub.registry.channels import DeviceType
from meterhub.times import iso, to_us

_DAY = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})", re.ASCII)


@dataclass(frozen=True, slots=True)
class BillFilter:
    """Which bills of a project; ``water_kind`` narrows water bills only, never electricity."""

    project_id: int
    device_type: DeviceType | None = None
    device_id: str | None = None
    water_kind: str | None = None
    ends_from: int | None = None
    """Period end ``>=`` this µs."""
    ends_before: int | None = None
    """Period end ``<`` this µs."""

    def clauses(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = [bills.c.project_id == self.project_id]
        if self.device_type is not None:
            found.append(bills.c.device_type == self.device_type.value)
        if self.device_id is not None:
            found.append(bills.c.device_id == self.device_id)
        if self.water_kind is not None:
            found.append(
                or_(
                    bills.c.device_type != DeviceType.WATER.value,
                    bills.c.water_kind == self.water_kind,
                )
            )
        if self.ends_from is not None:
            found.append(bills.c.to_time >= self.ends_from)
        if self.ends_before is not None:
            found.append(bills.c.to_time < self.ends_before)
        return found


@dataclass(frozen=True, slots=True)
class Bill:
    id: int
    device_id: str
    device_type: DeviceType
    water_kind: str | None
    from_time: int
    to_time: int
    previous_reading: Decimal
    reading: Decimal
    consumption: Decimal
    charge: Decimal
    currency: str
    estimated: bool
    house_address: list[str]
    residents: list[dict[str, str]]
    created_at: int
    items: tuple[Item, ...] = ()
    """The periods of a time-of-use bill, in the tariff's order; none for other bills."""

    @classmethod
    def from_row(cls, row: Any, items: tuple[Item, ...] = ()) -> Bill:
        return cls(
            id=row.id,
            device_id=row.device_id,
            device_type=DeviceType(row.device_type),
            water_kind=row.water_kind,
            from_time=row.from_time,
            to_time=row.to_time,
            previous_reading=Decimal(row.previous_reading).quantize(REGISTER_STEP),
            reading=Decimal(row.reading).quantize(REGISTER_STEP),
            consumption=Decimal(row.consumption).quantize(REGISTER_STEP),
            charge=Decimal(row.charge).quantize(CENT),
            currency=row.currency,
            estimated=bool(row.estimated),
            house_address=json.loads(row.house_address),
            residents=json.loads(row.residents),
            created_at=row.created_at,
            items=items,
        )


def _with_items(conn: Connection, rows: Sequence[Any]) -> list[Bill]:
    """The bills of ``rows`` with their items (one query for all of them)."""
    found: dict[int, list[Item]] = {}
    ids = [row.id for row in rows]
    if ids:
        query = select(bill_items).where(bill_items.c.bill_id.in_(ids))
        for item in conn.execute(query.order_by(bill_items.c.bill_id, bill_items.c.seq)):
            found.setdefault(item.bill_id, []).append(Item.from_row(item))
    return [Bill.from_row(row, tuple(found.get(row.id, ()))) for row in rows]


def _newest_first(where: BillFilter) -> Select[Any]:
    return select(bills).where(*where.clauses()).order_by(bills.c.to_time.desc(), bills.c.id.desc())


def page_bills(
    conn: Connection, where: BillFilter, *, offset: int, limit: int
) -> tuple[int, list[Bill]]:
    """How many bills match, and one page of them, newest first."""
    total = conn.execute(select(func.count()).select_from(bills).where(*where.clauses()))
    page = conn.execute(_newest_first(where).offset(offset).limit(limit))
    return total.scalar_one(), _with_items(conn, page.all())


@dataclass(frozen=True, slots=True)
class BillTotal:
    """Sums over the bills of one device type and currency, and of one period end (``to_time``)
    or of every period (``None``)."""

    to_time: int | None
    device_type: DeviceType
    currency: str
    bills: int
    consumption: Decimal
    charge: Decimal

    @classmethod
    def from_row(cls, row: Any) -> BillTotal:
        return cls(
            to_time=row._mapping.get("to_time"),
            device_type=DeviceType(row.device_type),
            currency=row.currency,
            bills=row.bills,
            consumption=Decimal(row.consumption).quantize(REGISTER_STEP),
            charge=Decimal(row.charge).quantize(CENT),
        )


def _sums(where: BillFilter, *keys: ColumnElement[Any]) -> Select[Any]:
    """Count, consumption and charges of the matching bills, grouped by ``keys``, device type
    and currency."""
    groups = (*keys, bills.c.device_type, bills.c.currency)
    return (
        select(
            *groups,
            func.count().label("bills"),
            func.sum(bills.c.consumption).label("consumption"),
            func.sum(bills.c.charge).label("charge"),
        )
        .where(*where.clauses())
        .group_by(*groups)
    )


def period_totals(conn: Connection, where: BillFilter, *, limit: int) -> list[BillTotal]:
    """Totals per period end (newest first), device type and currency; at most ``limit``."""
    query = _sums(where, bills.c.to_time).order_by(
        bills.c.to_time.desc(), bills.c.device_type, bills.c.currency
    )
    return [BillTotal.from_row(row) for row in conn.execute(query.limit(limit))]


def bill_totals(conn: Connection, where: BillFilter) -> list[BillTotal]:
    """Totals per device type and currency over every matching bill."""
    query = _sums(where).order_by(bills.c.device_type, bills.c.currency)
    return [BillTotal.from_row(row) for row in conn.execute(query)]


def iter_bills(conn: Connection, where: BillFilter, *, chunk: int = 1000) -> Iterator[Bill]:
    """Every matching bill, newest first, read ``chunk`` rows at a time (keyset, no offset)."""
    query = _newest_first(where).limit(chunk)
    after: tuple[int, int] | None = None
    while True:
        page = query
        if after is not None:
            to_time, bill_id = after
            page = query.where(
                or_(
                    bills.c.to_time < to_time,
                    and_(bills.c.to_time == to_time, bills.c.id < bill_id),
                )
            )
        rows = conn.execute(page).all()
        yield from _with_items(conn, rows)
        if len(rows) < chunk:
            return
        after = (rows[-1].to_time, rows[-1].id)


def parse_day(text: str, field: str) -> date:
    """A calendar day written ``2019-09-21`` or without padding, ``2019-9-21``."""
    found = _DAY.fullmatch(text.strip())
    if found is None:
        raise InvalidInput.field(field, f"{text!r} is not a date like 2019-9-21")
    try:
        return date(*(int(part) for part in found.groups()))
    except ValueError as exc:
        raise InvalidInput.field(field, f"{text!r}: {exc}") from None


def days_window(start: date, end: date, zone: tzinfo) -> tuple[int, int]:
    """µs from ``start`` 00:00 to the midnight ending ``end`` (exclusive), in ``zone``."""
    if end < start:
        raise InvalidInput.field("end_date", f"{end} is before start_date {start}")
    first = datetime.combine(start, datetime.min.time())
    after_last = datetime.combine(end + timedelta(days=1), datetime.min.time())
    return to_us(first, zone), to_us(after_last, zone)


CSV_COLUMNS = (
    "id",
    "device_id",
    "device_type",
    "water_kind",
    "house_address",
    "residents",
    "from_time",
    "to_time",
    "previous_reading",
    "reading",
    "consumption",
    "charge",
    "currency",
    "estimated",
    "created_at",
)
ITEM_COLUMNS = (
    "item_period",
    "item_start_reading",
    "item_end_reading",
    "item_consumption",
    "item_price",
    "item_charge",
    "item_estimated",
    "item_note",
)


def csv_text(found: Iterable[Bill], zone: tzinfo, *, flush_at: int = 64 * 1024) -> Iterator[str]:
    """The header and one CSV line per bill, in pieces of about ``flush_at`` characters.

    Address and residents are JSON (lossless, UTF-8), times ISO 8601 in ``zone``. The
    ``item_*`` columns are empty on a bill's line; a time-of-use bill's line is followed by
    one line per item, which repeats the bill's id, device and period and fills only the
    ``item_*`` columns (so sums of ``consumption`` and ``charge`` count each bill once).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS + ITEM_COLUMNS)
    blank = ("",) * len(ITEM_COLUMNS)
    for bill in found:
        row = _csv_row(bill, zone)
        writer.writerow(row + blank)
        writer.writerows(_item_row(row, item) for item in bill.items)
        if buffer.tell() >= flush_at:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()


def _item_row(bill_row: tuple[object, ...], item: Item) -> tuple[object, ...]:
    """An item's CSV line: the bill's id, device and period, then the item."""
    return (
        *bill_row[:4],
        "",
        "",
        *bill_row[6:8],
        *[""] * (len(CSV_COLUMNS) - 8),
        item.period,
        item.start_register,
        item.end_register,
        item.consumption,
        format(item.price, "f"),
        item.charge,
        "true" if item.estimated else "false",
        item.note or "",
    )


def _csv_row(bill: Bill, zone: tzinfo) -> tuple[object, ...]:
    return (
        bill.id,
        bill.device_id,
        bill.device_type.value,
        bill.water_kind or "",
        json.dumps(bill.house_address, ensure_ascii=False),
        json.dumps(bill.residents, ensure_ascii=False),
        iso(bill.from_time, zone),
        iso(bill.to_time, zone),
        bill.previous_reading,
        bill.reading,
        bill.consumption,
        bill.charge,
        bill.currency,
        "true" if bill.estimated else "false",
        iso(bill.created_at, zone),
    )
