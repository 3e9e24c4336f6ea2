"""Request dependencies: the database connection, the settings, and who is calling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine

from meterhub.billing.tasks import Task, get_task
from meterhub.db import snapshot
from meterhub.errors import Forbidden, NotFound, Unauthorized
from meterhub.registry.projects import Project, get_project
from meterhub.registry.users import TOKEN_OWNER, User, check_owner, parse_token, user_for_token
from meterhub.settings import Settings
from meterhub.short_reads import ShortReads


async def get_engine(request: Request) -> Engine:
    """The app's engine (``async``, as the settings below: no thread for an attribute)."""
    engine: Engine = request.app.state.engine
    return engine


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def connection_slot(request: Request) -> AsyncIterator[None]:
    """A place among the ``REQUEST_CONNECTIONS`` requests holding a connection, awaited in
    the event loop. Without it, requests beyond the pool would block worker threads in the
    pool's checkout while those holding connections wait for a thread to give them back."""
    slots: asyncio.Semaphore = request.app.state.connection_slots
    async with slots:
        yield


def get_conn(
    engine: Annotated[Engine, Depends(get_engine)],
    _slot: Annotated[None, Depends(connection_slot, scope="function")],
) -> Iterator[Connection]:
    """One transaction per request: committed on success, rolled back on any error.

    Function-scoped, so the commit happens before the response is sent: a client that
    got its answer reads its own writes.
    """
    with engine.begin() as conn:
        yield conn


ConnDep = Annotated[Connection, Depends(get_conn, scope="function")]


def get_read_conn(
    engine: Annotated[Engine, Depends(get_engine)],
    _slot: Annotated[None, Depends(connection_slot, scope="function")],
) -> Iterator[Connection]:
    """A read-only request's connection: every statement sees one snapshot (``db.snapshot``),
    so a read of rows and chunks never falls between the two halves of a compaction."""
    with snapshot(engine) as conn:
        yield conn


ReadConnDep = Annotated[Connection, Depends(get_read_conn, scope="function")]
MAX_ROW_ID = 2_147_483_647
"""The largest integer row id (PostgreSQL ``integer``)."""
EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def presented_token(request: Request) -> str | None:
    """The token of ``Authorization: token <user_id>:<40 hex>``, if any."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "token" and value.strip() else None


def required_token(request: Request) -> str:
    """The presented token; ``Unauthorized`` (401) without one."""
    token = presented_token(request)
    if token is None:
        raise Unauthorized("authentication required: send Authorization: token <token>")
    return token


def current_user(request: Request, engine: EngineDep) -> User:
    """The caller, from its token; ``Unauthorized`` (401) without a valid one."""
    token = required_token(request)
    with engine.begin() as conn:
        return user_for_token(conn, token)


CurrentUser = Annotated[User, Depends(current_user)]


def admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise Forbidden("this needs an administrator")
    return user


AdminUser = Annotated[User, Depends(admin_user)]


def short_reads(request: Request) -> ShortReads:
    """The app's short reads (``meterhub.short_reads``), set up at first use."""
    state = request.app.state
    reads: ShortReads | None = getattr(state, "short_reads", None)
    if reads is None:
        reads = state.short_reads = ShortReads(state.engine)
    return reads


async def ingest_access(request: Request) -> None:
    """Counter and platform calls: any valid user, or anyone with ``open_ingest``.

    On every ingest and counter request, so it takes no sub-dependencies, which cost
    more than the check itself, and looks the token up in one short read (no thread, no
    pooled connection; see ``meterhub.short_reads``), never from a cache: a revoked token
    is refused from the next request on, on every worker.
    """
    if request.app.state.settings.open_ingest:
        return
    named, digest = parse_token(required_token(request))
    rows = await short_reads(request).fetch(TOKEN_OWNER, (digest,))
    check_owner(rows[0][0] if rows else None, named)


def check_project(user: User, project_id: int) -> None:
    """``NotFound`` for a project the user may not see (its existence is not revealed)."""
    if not user.can_access(project_id) or not 1 <= project_id <= MAX_ROW_ID:
        raise NotFound(f"no project with id {project_id}")


def visible_project(project_id: int, user: CurrentUser, conn: ConnDep) -> Project:
    """The project named by ``project_id`` (in the path or the query) if the caller may see
    it; 404 alike for an unknown and a hidden one."""
    check_project(user, project_id)
    return get_project(conn, project_id)


ProjectDep = Annotated[Project, Depends(visible_project)]


@dataclass(frozen=True, slots=True)
class VisibleTask:
    task: Task
    project: Project


def visible_task(conn: Connection, user: User, key: str) -> VisibleTask:
    """The billing task ``key`` and its project; 404 alike when it does not exist and when
    its project is hidden from ``user``."""
    task = get_task(conn, key)
    check_project(user, task.project_id)
    return VisibleTask(task, get_project(conn, task.project_id))
