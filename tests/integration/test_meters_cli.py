"""``meterhub meters import`` and ``meterhub meters export`` as a user runs them (a real
subprocess), on both databases: all rows or none, a progress bar on stderr, round trips."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from meterhub.cli import main
from meterhub.db import make_engine
from meterhub.registry.tables import devices

FLEET = (
    "device_id,type,water_kind,host,port,enabled,house_id\n"
    "e-1,electricity,,,9001,true,\n"
    "w-1,water,tap,127.0.0.1,9002,false,\n"
    "n-1,,,,,,\n"
)


def meterhub(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meterhub.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def stored(database_url: str) -> int:
    engine = make_engine(database_url)
    with engine.connect() as conn:
        found = int(conn.execute(select(func.count()).select_from(devices)).scalar_one())
    engine.dispose()
    return found


@pytest.mark.parametrize("action", ["import", "export"])
def test_the_commands_have_help(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["meters", action, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: meterhub meters {action}" in capsys.readouterr().out


def test_import_then_export_round_trips(database_url: str, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.csv"
    fleet.write_text(FLEET)
    done = meterhub("meters", "import", str(fleet), "--database", database_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"imported {fleet}: 3 created, 0 updated, 0 unchanged\n"
    assert "[########################################] stored 3/3 rows" in done.stderr

    exported = meterhub("meters", "export", "--database", database_url)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.splitlines() == [
        "device_id,type,water_kind,host,port,enabled,house_id,protocol,unit_id,model",
        "e-1,electricity,,127.0.0.1,9001,true,,http,0,",
        "w-1,water,tap,127.0.0.1,9002,false,,http,0,",
        "n-1,electricity,,,,true,,http,0,",
    ]
    again = tmp_path / "meters.csv"
    written = meterhub("meters", "export", str(again), "--database", database_url)
    assert "exported 3 meters to" in written.stderr
    assert again.read_bytes() == exported.stdout.replace("\n", "\r\n").encode()
    same = meterhub("meters", "import", str(again), "--database", database_url)
    assert same.stdout.endswith(": 0 created, 0 updated, 3 unchanged\n"), same.stderr

    edited = again.read_text().replace("9002,false", "9003,true")
    changed = meterhub("meters", "import", "-", "--database", database_url, stdin=edited)
    assert changed.stdout == "imported -: 0 created, 1 updated, 2 unchanged\n", changed.stderr


def test_a_bad_file_lists_every_bad_line_and_stores_nothing(
    database_url: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(FLEET + "x-1,gas,,,9004,,\nw-1,,,,70000,maybe,0\n")
    done = meterhub("meters", "import", str(bad), "--database", database_url)
    assert done.returncode == 1
    problems = [line for line in done.stderr.splitlines() if line.startswith("line ")]
    assert problems == [
        "line 3: device_id: the same device id w-1 as line 6",
        "line 5: type: Input should be 'electricity' or 'water'",
        "line 6: device_id: the same device id w-1 as line 3",
        "line 6: port: Input should be less than or equal to 65535",
        "line 6: enabled: Input should be a valid boolean, unable to interpret input",
        "line 6: house_id: Input should be greater than or equal to 1",
    ]
    assert done.stderr.endswith(f"meterhub: nothing imported from {bad}\n")
    assert stored(database_url) == 0
    missing = meterhub("meters", "import", str(tmp_path / "none.csv"), "--database", database_url)
    assert missing.returncode != 0
    assert "cannot read" in missing.stderr
