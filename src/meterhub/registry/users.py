"""Users, the projects they are granted, and their API tokens.

A token reads ``<user_id>:<40 hex>``; only its SHA-256 digest is stored, so a leaked
database does not leak usable tokens. Passwords are hashed with Argon2id.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, bindparam, delete, insert, select, update

from meterhub.errors import BadToken, InvalidInput, Unauthorized
from meterhub.registry.projects import get_project
from meterhub.registry.tables import tokens, user_projects, users
from meterhub.short_reads import Statement
from meterhub.times import now_us

TOKEN_FORM = re.compile(r"^(\d{1,18}):([0-9a-f]{40})$")
_hasher = PasswordHasher()


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    is_admin: bool
    project_ids: frozenset[int]

    def can_access(self, project_id: int) -> bool:
        return self.is_admin or project_id in self.project_ids

    @property
    def visible_projects(self) -> frozenset[int] | None:
        """The projects this user sees: ``None`` for all of them (an administrator)."""
        return None if self.is_admin else self.project_ids


def create_user(
    conn: Connection,
    username: str,
    password: str,
    *,
    is_admin: bool = False,
    project_ids: Sequence[int] = (),
) -> User:
    """A new user; ``InvalidInput`` for a taken name, a short password or an unknown project."""
    if not re.fullmatch(r"[A-Za-z0-9_.@+-]{1,150}", username):
        raise InvalidInput.field("username", "1-150 letters, digits or _.@+-")
    _check_password(password)
    if conn.execute(select(users.c.id).where(users.c.username == username)).first():
        raise InvalidInput.field("username", f"user {username} already exists")
    for project_id in project_ids:
        get_project(conn, project_id)
    query = insert(users).values(
        username=username,
        password_hash=_hasher.hash(password),
        is_admin=is_admin,
        created_at=now_us(),
    )
    user_id: int = conn.execute(query.returning(users.c.id)).scalar_one()
    if project_ids:
        grants = [{"user_id": user_id, "project_id": p} for p in set(project_ids)]
        conn.execute(insert(user_projects), grants)
    return get_user(conn, user_id)


def get_user(conn: Connection, user_id: int) -> User:
    row = conn.execute(select(users).where(users.c.id == user_id)).first()
    if row is None:
        raise Unauthorized("unknown user")
    granted = select(user_projects.c.project_id).where(user_projects.c.user_id == user_id)
    return User(row.id, row.username, row.is_admin, frozenset(conn.execute(granted).scalars()))


def user_named(conn: Connection, username: str) -> User:
    row = conn.execute(select(users.c.id).where(users.c.username == username)).first()
    if row is None:
        raise InvalidInput.field("username", f"no user {username}")
    return get_user(conn, row.id)


def authenticate(conn: Connection, username: str, password: str) -> User:
    """The user with these credentials; ``Unauthorized`` (one message for both mistakes)."""
    row = conn.execute(select(users).where(users.c.username == username)).first()
    try:
        if row is None or not _hasher.verify(row.password_hash, password):
            raise Unauthorized("wrong username or password")
    except (VerificationError, InvalidHashError):
        raise Unauthorized("wrong username or password") from None
    return get_user(conn, row.id)


def issue_token(conn: Connection, user_id: int) -> str:
    """A new token for the user; shown once, stored as a digest."""
    token = f"{user_id}:{secrets.token_hex(20)}"
    conn.execute(insert(tokens).values(digest=_digest(token), user_id=user_id, created_at=now_us()))
    return token


_TOKEN_USER = (
    select(users.c.id, users.c.username, users.c.is_admin)
    .join(tokens, tokens.c.user_id == users.c.id)
    .where(tokens.c.digest == bindparam("digest"))
)
_GRANTS = select(user_projects.c.project_id).where(user_projects.c.user_id == bindparam("user_id"))
"""Built once: building a statement costs more than running it."""

TOKEN_OWNER_SQL = "SELECT u.id FROM tokens k JOIN users u ON u.id = k.user_id WHERE k.digest = $1"
TOKEN_OWNER = Statement("token_owner", TOKEN_OWNER_SQL, (int,))
"""The owner of the token whose digest is ``$1``: no row for an unknown or revoked token (a
short read, see ``meterhub.short_reads``; check the owner with ``check_owner``)."""


def parse_token(token: str) -> tuple[int, str]:
    """The user id a token names and its stored digest; ``BadToken`` if malformed."""
    form = TOKEN_FORM.match(token)
    if form is None:
        raise BadToken("malformed token: expected <user_id>:<40 hex>")
    return int(form.group(1)), _digest(token)


def check_owner(owner: int | None, named: int) -> int:
    """``owner`` (of a token's digest, ``None`` for none) if it is the user the token names
    (``parse_token``); ``BadToken`` otherwise."""
    if owner is None or owner != named:
        raise BadToken("invalid or revoked token")
    return owner


def user_for_token(conn: Connection, token: str) -> User:
    """The owner of a valid, unrevoked token; ``BadToken`` otherwise."""
    named, digest = parse_token(token)
    row = conn.execute(_TOKEN_USER, {"digest": digest}).first()
    check_owner(row.id if row else None, named)
    assert row is not None
    granted = frozenset(conn.execute(_GRANTS, {"user_id": row.id}).scalars())
    return User(row.id, row.username, row.is_admin, granted)


def set_password(conn: Connection, user_id: int, password: str) -> None:
    """A new password; the user's tokens stay valid."""
    _check_password(password)
    query = update(users).where(users.c.id == user_id)
    conn.execute(query.values(password_hash=_hasher.hash(password)))


def _check_password(password: str) -> None:
    if len(password) < 8:
        raise InvalidInput.field("password", "at least 8 characters")


def revoke_token(conn: Connection, token: str) -> None:
    conn.execute(delete(tokens).where(tokens.c.digest == _digest(token)))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
