"""The ``meterhub`` command: serve | worker | simulate | demo | db | meters | models | ..."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection

from meterhub.errors import MeterhubError
from meterhub.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=_log_level(args), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        result: int = args.handler(args)
    except ValidationError as exc:
        parser.error(_settings_problem(exc))
    except KeyboardInterrupt:
        return 130
    return result


def _log_level(args: argparse.Namespace) -> int:
    """INFO, but warnings and errors only for ``serve`` and ``demo`` without ``--verbose``."""
    return logging.WARNING if getattr(args, "verbose", None) is False else logging.INFO


def _add_verbose(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--verbose",
        action="store_true",
        help="log migrations, startup and every request (default: warnings and errors only)",
    )


def _settings_problem(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meterhub",
        description="Read meters, keep their readings as time series, serve and bill them.",
        epilog="Every setting can also come from the environment as METERHUB_<NAME>.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    _add_serve(commands)
    _add_simulate(commands)
    _add_sweep(commands)
    _add_worker(commands)
    _add_demo(commands)
    _add_source(commands)
    _add_user(commands)
    _add_meters(commands)
    _add_models(commands)
    _add_billing(commands)
    _add_db(commands)
    return parser


def _settings(args: argparse.Namespace, **fixed: Any) -> Settings:
    """Settings from the environment, overridden by the flags the user gave."""
    names = Settings.model_fields
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    return Settings(**{**given, **fixed})


def _add_serve(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="run the HTTP API and the collector", description=_serve_doc()
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--database", dest="database_url", help="database URL")
    serve.add_argument("--workers", type=int, help="HTTP worker processes (default 1)")
    serve.add_argument("--poll-interval", type=float, help="seconds between reads of a meter")
    serve.add_argument("--collector-processes", type=int, help="poll in N child processes")
    serve.add_argument("--source-address", help="local address polls are sent from")
    serve.add_argument(
        "--no-collector",
        dest="collector_enabled",
        action="store_const",
        const=False,
        help="serve the API only",
    )
    _add_verbose(serve)
    serve.set_defaults(handler=_serve)


def _serve_doc() -> str:
    return (
        "Serve the API and poll meters in one process (or HTTP from --workers N processes,"
        " polling in the first); Ctrl-C stops cleanly."
    )


def _serve(args: argparse.Namespace) -> int:
    from meterhub.server import serve

    return serve(_settings(args), host=args.host, port=args.port, verbose=args.verbose)


def _add_simulate(commands: Any) -> None:
    sim = commands.add_parser(
        "simulate",
        help="serve simulated meters, one per port",
        description="Serve simulated meters on a port range, e.g. --ports 9000-65000.",
    )
    sim.add_argument("--ports", required=True, type=_port_range, help="FIRST-LAST, inclusive")
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sim.add_argument("--seed", type=int, default=0, help="seed of the simulated values")
    sim.add_argument("--id-offset", type=int, default=0, help="meter id = port + offset")
    sim.add_argument("--processes", type=int, help="serving processes (default: as needed)")
    sim.add_argument("--register", metavar="URL", help="register the meters with this server")
    sim.add_argument("--source-address", help="local address for registration requests")
    sim.add_argument("--token", help="API token for --register (unless the server has open ingest)")
    sim.add_argument("--record", type=Path, help="append every answer served to PATH.<n>")
    for fault, what in (
        ("timeout", "never answer"),
        ("garbage", "answer non-JSON"),
        ("wrong-id", "answer another meter's id"),
        ("reset", "reset their register every 3rd request"),
    ):
        sim.add_argument(f"--{fault}", type=float, default=0.0, metavar="FRACTION", help=what)
    sim.add_argument(
        "--modbus",
        action="store_true",
        help="Modbus TCP gateways instead (meter id = port x 1000 + unit + offset; garbage:"
        " a Modbus exception, wrong-id: the next unit answers)",
    )
    sim.add_argument("--units", type=int, default=1, help="--modbus: units per port (1-247)")
    sim.add_argument("--model", default="SDM120", help="--modbus: the built-in meter model")
    sim.add_argument(
        "--csv", type=Path, metavar="PATH", help="--modbus: write the meters for `meters import`"
    )
    sim.set_defaults(handler=_simulate)


def _port_range(text: str) -> range:
    first, _, last = text.partition("-")
    try:
        ports = range(int(first), int(last or first) + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port range: {text!r}") from None
    if not ports or ports.start < 1 or ports.stop > 65536:
        raise argparse.ArgumentTypeError(f"not a port range within 1-65535: {text!r}")
    return ports


def _simulate(args: argparse.Namespace) -> int:
    from meterhub.collector.modbus_simulator import ModbusSimulatorConfig, run_modbus_simulator
    from meterhub.collector.simulator import Faults, SimulatorConfig, run_simulator

    try:
        faults = Faults(
            timeout=args.timeout, garbage=args.garbage, wrong_id=args.wrong_id, reset=args.reset
        )
        common = {
            "ports": args.ports,
            "host": args.host,
            "id_offset": args.id_offset,
            "seed": args.seed,
            "faults": faults,
            "processes": args.processes,
            "record": args.record,
        }
        if args.modbus:
            if args.register:
                raise ValueError("--register: Modbus meters are registered from --csv")
            modbus = ModbusSimulatorConfig(**common, units=args.units, model=args.model)
            run_modbus_simulator(modbus, args.csv)
            return 0
        config = SimulatorConfig(**common)
    except ValueError as exc:
        print(f"meterhub simulate: {exc}", file=sys.stderr)
        return 2
    run_simulator(
        config, register_url=args.register, source_address=args.source_address, token=args.token
    )
    return 0


def _add_sweep(commands: Any) -> None:
    sweep = commands.add_parser(
        "sweep",
        help="poll every enabled meter once, now, and exit",
        description="Poll every enabled meter once as fast as allowed, store the readings.",
    )
    sweep.add_argument("--database", dest="database_url", help="database URL")
    sweep.add_argument("--collector-processes", type=int, help="poll in N child processes")
    sweep.add_argument("--source-address", help="local address polls are sent from")
    sweep.add_argument("--poll-timeout", type=float, help="seconds a meter may take to answer")
    sweep.set_defaults(handler=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from meterhub.collector.service import sweep_once

    result = sweep_once(_settings(args))
    print(f"polled {result.polled} meters, {result.failed} failed, {result.points_written} points")
    return 0 if result.failed == 0 else 1


def _add_worker(commands: Any) -> None:
    worker = commands.add_parser(
        "worker",
        help="poll meters and bill as a Celery worker (several hosts, one PostgreSQL)",
        description="Take polling and billing tasks from the broker (METERHUB_BROKER_URL) "
        "and store into the shared PostgreSQL database; Ctrl-C or SIGTERM stops it after "
        "its tasks in hand.",
    )
    worker.add_argument("--name", help="worker name (default: this host's name)")
    worker.add_argument("--concurrency", type=int, help="worker processes (default: one per CPU)")
    worker.add_argument("--database", dest="database_url", help="database URL (PostgreSQL)")
    worker.add_argument("--broker", dest="broker_url", help="redis://... or amqp://...")
    _add_verbose(worker)
    worker.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace) -> int:
    import os
    import socket

    settings = _settings(args)
    if settings.broker_url is None:
        print("meterhub worker: set METERHUB_BROKER_URL or --broker", file=sys.stderr)
        return 2
    from meterhub.celery_app import app, configure

    configure(app, settings)
    level = "INFO" if args.verbose else "WARNING"
    app.worker_main(
        [
            "worker",
            f"--hostname={args.name or socket.gethostname()}",
            f"--concurrency={args.concurrency or os.cpu_count() or 1}",
            f"--queues={settings.broker_queue}",
            f"--loglevel={level}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0


def _add_demo(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="server + 200 simulated meters on SQLite, polled every 5 s",
        description="Start simulated meters on ports 9000-9199, register them, and serve.",
    )
    demo.add_argument("--port", type=int, default=8000, help="API port")
    demo.add_argument("--meters", type=int, default=200, help="how many simulated meters")
    demo.add_argument("--database", dest="database_url", help="database URL")
    _add_verbose(demo)
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from meterhub.demo import run_demo

    settings = _settings(args, poll_interval=5.0, open_ingest=True)
    run_demo(settings, port=args.port, meters=args.meters, verbose=args.verbose)
    return 0


def _add_source(commands: Any) -> None:
    source = commands.add_parser("source", help="manage connector data sources")
    actions = source.add_subparsers(required=True, metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="create a data source with its tags",
        description="Create a data source that connectors push into, with its tags.",
    )
    create.add_argument("id", help="data source id, e.g. plant-1")
    create.add_argument("--name", help="display name (default: the id)")
    create.add_argument(
        "--tag", dest="tags", action="append", default=[], metavar="TAG_ID", help="repeatable"
    )
    create.add_argument("--inactive", action="store_true", help="create it deactivated")
    create.add_argument("--config", default="{}", help="JSON configuration string")
    create.add_argument("--database", dest="database_url", help="database URL")
    create.set_defaults(handler=_source_create)


def _source_create(args: argparse.Namespace) -> int:
    from meterhub.mqtt.config import split_secret
    from meterhub.registry.sources import create_source
    from meterhub.registry.tags import TagSpec

    with _transaction(args) as conn:
        config, secret = split_secret(args.config, None)
        create_source(
            conn,
            args.id,
            args.name or args.id,
            active=not args.inactive,
            config=config,
            secret=secret,
            tag_specs=[TagSpec(tag) for tag in args.tags],
        )
    print(f"created data source {args.id} with {len(args.tags)} tags")
    return 0


def _add_user(commands: Any) -> None:
    user = commands.add_parser("user", help="manage users")
    actions = user.add_subparsers(required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a user", description="Create a user.")
    create.add_argument("username")
    create.add_argument("--password", required=True, help="at least 8 characters")
    create.add_argument("--admin", action="store_true", help="may see and change everything")
    create.add_argument(
        "--project",
        dest="projects",
        type=int,
        action="append",
        default=[],
        metavar="ID",
        help="grant a project (repeatable)",
    )
    create.add_argument("--database", dest="database_url", help="database URL")
    create.set_defaults(handler=_user_create)
    token = commands.add_parser("token", help="API tokens")
    token_actions = token.add_subparsers(required=True, metavar="ACTION")
    issue = token_actions.add_parser(
        "create", help="print a new token for a user", description="Print a new API token."
    )
    issue.add_argument("username")
    issue.add_argument("--database", dest="database_url", help="database URL")
    issue.set_defaults(handler=_token_create)


def _user_create(args: argparse.Namespace) -> int:
    from meterhub.registry.users import create_user

    with _transaction(args) as conn:
        user = create_user(
            conn, args.username, args.password, is_admin=args.admin, project_ids=args.projects
        )
    print(f"created user {user.username} (id {user.id}{', admin' if user.is_admin else ''})")
    return 0


def _token_create(args: argparse.Namespace) -> int:
    from meterhub.registry.users import issue_token, user_named

    with _transaction(args) as conn:
        token = issue_token(conn, user_named(conn, args.username).id)
    print(token)
    return 0


@contextmanager
def _transaction(args: argparse.Namespace) -> Iterator[Connection]:
    """A migrated database's transaction; bad input ends the command with its message."""
    from meterhub.db import make_engine
    from meterhub.migrations import upgrade

    settings = _settings(args)
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            yield conn
    except MeterhubError as exc:
        raise SystemExit(f"meterhub: {exc}") from None
    finally:
        engine.dispose()


def _add_meters(commands: Any) -> None:
    meters = commands.add_parser("meters", help="import and export the meter list as CSV")
    actions = meters.add_subparsers(required=True, metavar="ACTION")
    load = actions.add_parser(
        "import",
        help="register or update the meters of a CSV file, all or none",
        description="Import meters from a CSV file (the format of `meters export`): every row "
        "is checked first, and with any bad one nothing is stored and each is listed; "
        "otherwise all are stored in one transaction. A row naming a registered meter "
        "updates it; a row equal to it changes nothing.",
    )
    load.add_argument("file", metavar="FILE.csv", help="the CSV file ('-': standard input)")
    load.add_argument("--database", dest="database_url", help="database URL")
    load.set_defaults(handler=_meters_import)
    dump = actions.add_parser(
        "export",
        help="write every meter as CSV",
        description="Write every meter as CSV, in the format `meters import` takes back.",
    )
    dump.add_argument("file", nargs="?", metavar="FILE", help="where to write (default: stdout)")
    dump.add_argument("--database", dest="database_url", help="database URL")
    dump.set_defaults(handler=_meters_export)


def _meters_import(args: argparse.Namespace) -> int:
    from meterhub.api.meter_rows import import_csv
    from meterhub.db import make_engine
    from meterhub.errors import InvalidInput
    from meterhub.migrations import upgrade

    settings = _settings(args)
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise SystemExit(f"meterhub: cannot read {args.file}: {exc.strerror}") from None
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    bar = _ProgressBar()
    try:
        with engine.begin() as conn:
            done = import_csv(conn, data, settings, bounded=False, progress=bar.show)
    except InvalidInput as exc:
        bar.end()
        for where, messages in exc.errors.items():
            print(f"{where}: {'; '.join(messages)}", file=sys.stderr)
        print(f"meterhub: nothing imported from {args.file}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    bar.end()
    print(
        f"imported {args.file}: {done.created} created, {done.updated} updated, "
        f"{done.unchanged} unchanged"
    )
    return 0


class _ProgressBar:
    """``[####....] stored 30000/56001`` on stderr, redrawn in place."""

    def __init__(self) -> None:
        self.drawn = False

    def show(self, what: str, done: int, total: int) -> None:
        width = 40
        filled = width * done // total if total else width
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {what} {done}/{total} rows ")
        sys.stderr.flush()
        self.drawn = True

    def end(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            self.drawn = False


def _meters_export(args: argparse.Namespace) -> int:
    from meterhub.db import make_engine
    from meterhub.migrations import upgrade
    from meterhub.registry.meter_csv import export_csv

    settings = _settings(args)
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            text = export_csv(conn)
    finally:
        engine.dispose()
    if args.file is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.file).write_text(text, encoding="utf-8", newline="")
    except OSError as exc:
        raise SystemExit(f"meterhub: cannot write {args.file}: {exc.strerror}") from None
    rows = text.count("\n") - 1
    print(f"exported {rows} meters to {args.file}", file=sys.stderr)
    return 0


def _add_models(commands: Any) -> None:
    models = commands.add_parser("models", help="Modbus meter models (register maps)")
    actions = models.add_subparsers(required=True, metavar="ACTION")
    load = actions.add_parser(
        "import",
        help="add or replace the models of a TOML or JSON file",
        description="Add the meter models of FILE (TOML: one model; JSON: one or a list), "
        "replacing those of the same name; all or none.",
    )
    load.add_argument("file", type=Path, metavar="FILE")
    load.add_argument("--database", help="database URL (default: METERHUB_DATABASE_URL)")
    load.set_defaults(handler=_models_import)
    show = actions.add_parser("list", help="list the meter models", description="List models.")
    show.add_argument("--database", help="database URL (default: METERHUB_DATABASE_URL)")
    show.set_defaults(handler=_models_list)


def _models_import(args: argparse.Namespace) -> int:
    from meterhub.errors import InvalidInput
    from meterhub.registry.meter_models import import_models, read_model_file

    try:
        docs = read_model_file(args.file)
        with _transaction(args) as conn:
            created, replaced = import_models(conn, docs)
    except InvalidInput as exc:
        for name, messages in exc.errors.items():
            print(f"{name}: {'; '.join(messages)}", file=sys.stderr)
        print(f"meterhub: nothing imported from {args.file}", file=sys.stderr)
        return 1
    print(f"imported {args.file}: {created} created, {replaced} replaced")
    return 0


def _models_list(args: argparse.Namespace) -> int:
    from meterhub.registry.meter_models import list_models

    with _transaction(args) as conn:
        for model in list_models(conn):
            channels = ", ".join(f"{c.name} ({c.unit})" for c in model.channels)
            origin = "built in" if model.builtin else "added"
            print(f"{model.name}\t{model.device_type}\t{origin}\t{channels}")
    return 0


def _add_billing(commands: Any) -> None:
    billing = commands.add_parser("billing", help="billing runs")
    actions = billing.add_subparsers(required=True, metavar="ACTION")
    run = actions.add_parser(
        "run",
        help="run a billing task for one instant",
        description="Bill every device of a task for the period ending at --at (once).",
    )
    run.add_argument("--task", required=True, metavar="KEY", help="the task's natrual_key")
    run.add_argument("--at", required=True, metavar="ISO_TIME", help="period end, ISO 8601")
    run.add_argument("--database", dest="database_url", help="database URL")
    run.set_defaults(handler=_billing_run)


def _billing_run(args: argparse.Namespace) -> int:
    from meterhub.billing.runs import run_task
    from meterhub.billing.tasks import get_task
    from meterhub.registry.projects import get_project
    from meterhub.times import parse_iso

    with _transaction(args) as conn:
        task = get_task(conn, args.task)
        try:
            at = parse_iso(args.at, get_project(conn, task.project_id).zone)
        except ValueError:
            raise SystemExit(f"meterhub: --at is not an ISO 8601 time: {args.at!r}") from None
        report = run_task(conn, task.key, at)
    if report.run_id is None:
        print(f"task {task.key} was already run for {args.at}: nothing billed again")
    else:
        print(
            f"task {task.key} at {args.at}: {report.billed} billed, {len(report.skipped)} skipped"
        )
        for skipped in report.skipped:
            print(f"  skipped {skipped['device_id']}: {skipped['reason']}")
    return 0


def _add_db(commands: Any) -> None:
    db = commands.add_parser("db", help="database maintenance")
    actions = db.add_subparsers(required=True, metavar="ACTION")
    upgrade = actions.add_parser("upgrade", help="apply every pending migration")
    upgrade.add_argument("--database", dest="database_url", help="database URL")
    upgrade.set_defaults(handler=_db_upgrade)
    compact = actions.add_parser(
        "compact",
        help="compress every closed day of readings now, and reclaim the space",
        description="Upgrade the schema, move every day older than METERHUB_COMPACT_AFTER "
        "into compressed chunks (showing progress), then give the freed space back.",
    )
    compact.add_argument("--database", dest="database_url", help="database URL")
    compact.set_defaults(handler=_db_compact)


def _db_upgrade(args: argparse.Namespace) -> int:
    from meterhub.migrations import upgrade

    settings = _settings(args)
    upgrade(settings.database_url)
    print(f"database is up to date: {settings.database_url}")
    return 0


def _db_compact(args: argparse.Namespace) -> int:
    from meterhub.db import make_engine
    from meterhub.migrations import upgrade
    from meterhub.storage.compactor import (
        Progress,
        compact,
        mark_unmarked,
        reclaim,
        roll_up_unrolled,
    )
    from meterhub.storage.retention import drop_before, retention_day
    from meterhub.times import DAY_US

    settings = _settings(args)
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)

    def show(progress: Progress) -> None:
        width = 40
        filled = width * progress.tags_done // progress.tags_total
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {progress.tags_done}/"
            f"{progress.tags_total} tags, {progress.points_moved} points"
        )
        sys.stderr.flush()

    try:
        moved = compact(engine, settle_us=round(settings.compact_after * DAY_US), report=show)
        if moved:
            sys.stderr.write("\n")
        rolled = roll_up_unrolled(engine)
        marked = mark_unmarked(engine)
        retain = settings.raw_retention_days
        dropped = (
            0 if retain is None else drop_before(engine, retention_day(round(retain * DAY_US)))
        )
        reclaim(engine)
    finally:
        engine.dispose()
    print(f"compacted {moved} points into day chunks: {settings.database_url}")
    if rolled:
        print(f"rolled up {rolled} chunks made before hourly rollups")
    if marked:
        print(f"marked the hours of {marked} months of tags compacted before hour marks")
    if dropped:
        print(f"dropped {dropped} points past the raw retention; their hourly rollups stay")
    return 0


if __name__ == "__main__":
    sys.exit(main())
