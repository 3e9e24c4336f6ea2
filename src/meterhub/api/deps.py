"""Request dependencies: the database connection and the settings of the running app."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine

from meterhub.settings import Settings


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_conn(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Connection]:
    """One transaction per request: committed on success, rolled back on any error.

    Function-scoped, so the commit happens before the response is sent: a client that
    got its answer reads its own writes.
    """
    with engine.begin() as conn:
        yield conn


ConnDep = Annotated[Connection, Depends(get_conn, scope="function")]
EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
