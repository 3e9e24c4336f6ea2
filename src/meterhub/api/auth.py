"""Logging in and out: ``/api/v1/auth/login/`` and ``/api/v1/auth/logout/``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from meterhub.api.deps import ConnDep, CurrentUser, presented_token
from meterhub.registry.users import authenticate, issue_token, revoke_token

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


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


@router.post("/login/", operation_id="login")
def login(body: Credentials, conn: ConnDep) -> Session:
    """Exchange a username and password for a new token (``<user_id>:<40 hex>``)."""
    user = authenticate(conn, body.username, body.password)
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
