"""Logging in and out: ``/api/v1/auth/login/`` and ``/api/v1/auth/logout/``; who is
calling from where, for the limits on failed logins and bad tokens
(``meterhub.registry.throttle``)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from meterhub.api.deps import ConnDep, CurrentUser, presented_token
from meterhub.registry.throttle import Throttle
from meterhub.registry.users import issue_token, revoke_token

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

THROTTLE_CONNECTIONS = 2
"""Bad tokens counted at once per process: a flood of them waits in the event loop, never
for the pooled connections that requests and background jobs need."""


def client_address(request: Request) -> str:
    """The caller's address: the peer, or what a trusted proxy forwarded (uvicorn's
    ``--forwarded-allow-ips``, ``FORWARDED_ALLOW_IPS``)."""
    return request.client.host if request.client else "unknown"


def get_throttle(request: Request) -> Throttle:
    throttle: Throttle = request.app.state.throttle
    return throttle


ThrottleDep = Annotated[Throttle, Depends(get_throttle)]


async def bad_token_wait(request: Request) -> int | None:
    """After a bad token: the seconds the caller's address must wait (it sent too many),
    else ``None``; the failure is counted (``Throttle.token_refused``)."""
    state = request.app.state
    slots: asyncio.Semaphore | None = getattr(state, "throttle_slots", None)
    if slots is None:
        slots = state.throttle_slots = asyncio.Semaphore(THROTTLE_CONNECTIONS)
    async with slots:
        return await run_in_threadpool(get_throttle(request).token_refused, client_address(request))


class Credentials(BaseModel):
    username: str = Field(min_length=1, max_length=150)
    password: str = Field(min_length=1, max_length=1024)


class UserPublic(BaseModel):
    id: int
    username: str
    is_admin: bool
    project_ids: list[int]


class Session(BaseModel):
    token: str = Field(description="Send as `Authorization: token <token>`.")
    user: UserPublic


@router.post(
    "/login/",
    operation_id="login",
    responses={
        401: {"description": "Wrong username or password"},
        429: {"description": "Too many failed logins lately: wait `Retry-After` seconds"},
    },
)
def login(body: Credentials, request: Request, conn: ConnDep, throttle: ThrottleDep) -> Session:
    """Exchange a username and password for a new token (``<user_id>:<40 hex>``).

    Failed logins are limited per account and per address (429 with ``Retry-After``)."""
    user = throttle.authenticate(conn, body.username, body.password, client_address(request))
    public = UserPublic(
        id=user.id,
        username=user.username,
        is_admin=user.is_admin,
        project_ids=sorted(user.project_ids),
    )
    return Session(token=issue_token(conn, user.id), user=public)


@router.post("/logout/", status_code=204, response_class=Response, operation_id="logout")
def logout(request: Request, user: CurrentUser, conn: ConnDep) -> None:
    """Revoke the token this request was made with."""
    token = presented_token(request)
    assert token is not None  # CurrentUser checked it
    revoke_token(conn, token)
