"""The meter list as CSV: what ``export`` writes and ``import`` reads, the same format.

```
device_id,type,water_kind,host,port,enabled,house_id,protocol,unit_id,model
e-1,electricity,,127.0.0.1,9001,true,,http,0,
w-1,water,tap,127.0.0.1,9002,false,3,http,0,
m-1,electricity,,10.0.0.7,502,true,,modbus,3,SDM120
```

The first line names the columns (``COLUMNS``, any order, any subset that has
``device_id``); a column left out keeps the stored value of a known meter (a new one
takes the default). An empty cell is "none" (no water kind, no address, no house), or the
default for ``type``, ``enabled``, ``protocol`` (http) and ``unit_id`` (0). Files
written before Modbus meters existed (without the last three columns) import as they did.
Rows are separated by newlines (CR LF as written); cells by commas (or semicolons, when
the first line has no comma), quoted as RFC 4180 does; a UTF-8 byte order mark is
skipped; blank lines are skipped.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, select

from meterhub.errors import InvalidInput
from meterhub.registry.device_import import RowNames
from meterhub.registry.tables import devices, houses

COLUMNS = (
    "device_id",
    "type",
    "water_kind",
    "host",
    "port",
    "enabled",
    "house_id",
    "protocol",
    "unit_id",
    "model",
)
NAMES = RowNames("line {}", "line {}: {}")
"""How errors name a row of a CSV file and its cells: by the file's line."""


_DEFAULTED = frozenset({"type", "enabled", "protocol", "unit_id"})
"""Columns whose empty cell means the default; in the others it means none."""
_LOWERED = frozenset({"type", "enabled", "water_kind", "protocol"})
"""Columns read case-insensitively."""


@dataclass(slots=True)
class CsvRows:
    """The data rows of a file, each with its line and its fields (a row of the API's bulk
    list: cells stripped, empty ones ``None`` or left out as above), and the rows that
    could not be read (``{(line, ""): messages}``)."""

    rows: list[tuple[int, dict[str, str | None]]] = field(default_factory=list)
    errors: dict[tuple[int, str], list[str]] = field(default_factory=dict)


def read_csv(text: str) -> CsvRows:
    """The rows of a meter CSV; ``InvalidInput`` naming line 1 when its header is not one."""
    lines = io.StringIO(text.removeprefix("\ufeff"), newline="")
    first = lines.readline()
    lines.seek(0)
    delimiter = ";" if ";" in first and "," not in first else ","
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        columns = _columns(header)
        found = CsvRows()
        line = reader.line_num + 1
        for cells in reader:
            if any(cell.strip() for cell in cells):
                _add_row(found, columns, line, cells)
            line = reader.line_num + 1
    except csv.Error as exc:
        raise InvalidInput.field(NAMES.row(reader.line_num), f"not CSV: {exc}") from None
    return found


def _columns(header: list[str] | None) -> list[str]:
    if not header or not any(cell.strip() for cell in header):
        raise InvalidInput.field(
            NAMES.row(1), f"the first line names the columns: {', '.join(COLUMNS)}"
        )
    columns = [cell.strip().lower() for cell in header]
    errors: dict[str, str] = {}
    for column in columns:
        if column not in COLUMNS:
            errors[NAMES.field(1, column or "(empty)")] = (
                f"unknown column; the columns are {', '.join(COLUMNS)}"
            )
        elif columns.count(column) > 1:
            errors[NAMES.field(1, column)] = "named twice"
    if "device_id" not in columns:
        errors[NAMES.field(1, "device_id")] = "the device_id column is required"
    if errors:
        raise InvalidInput(errors)
    return columns


def _add_row(found: CsvRows, columns: list[str], line: int, cells: list[str]) -> None:
    if len(cells) != len(columns):
        found.errors[(line, "")] = [f"{len(cells)} cells, but the first line names {len(columns)}"]
        return
    item: dict[str, str | None] = {}
    for column, cell in zip(columns, cells, strict=True):
        text = cell.strip()
        if text:
            item[column] = text.lower() if column in _LOWERED else text
        elif column not in _DEFAULTED and column != "device_id":
            item[column] = None
    found.rows.append((line, item))


def export_csv(conn: Connection, project_ids: frozenset[int] | None = None) -> str:
    """Every meter (``project_ids``: those in houses of these projects) as CSV, in
    registration order; importing it again changes nothing."""
    query = select(*(devices.c[name] for name in COLUMNS)).order_by(devices.c.id)
    if project_ids is not None:
        in_projects = select(houses.c.id).where(houses.c.project_id.in_(project_ids))
        query = query.where(devices.c.house_id.in_(in_projects))
    return csv_text(conn.execute(query))


def csv_text(rows: Iterable[tuple[object, ...]]) -> str:
    """``rows`` of ``COLUMNS`` values as the CSV text (booleans as ``true``/``false``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(
        tuple(("true" if v else "false") if isinstance(v, bool) else v for v in row) for row in rows
    )
    return buffer.getvalue()
