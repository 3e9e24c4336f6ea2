"""Failed logins and bad tokens, counted in the database, so that every worker process of
``serve --workers N`` sees the same counts.

Three kinds of counter, each keyed in ``auth_failures``:

- ``account:<username>``: failed logins of one account, from anywhere
  (``login_max_failures``). A successful login resets it. While it is locked, an address
  the user logged in from in the last ``ORIGIN_DAYS`` days may still log in (under its own
  address limit): an attacker can keep an account locked for strangers, never for its
  owner's usual places.
- ``address:<ip>``: failed logins from one address, whatever the accounts
  (``login_max_failures_per_address``).
- ``token:<ip>``: malformed, unknown or revoked tokens from one address
  (``token_max_failures_per_address``). Once over, its bad tokens answer 429 instead of
  401. Valid tokens are never looked up here: the success path costs nothing more.

A counter reaching its limit within ``login_window`` seconds is locked for
``login_lockout`` seconds, twice as long for each further lockout in a row, never longer
than ``login_lockout_max``; the streak is forgotten once a whole window has passed after a
lockout ended. A locked login is refused before the password is checked (right or wrong),
and refused attempts are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Case,
    ColumnElement,
    Connection,
    Engine,
    case,
    delete,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from meterhub.errors import Throttled, Unauthorized
from meterhub.registry.tables import auth_failures, login_origins, users
from meterhub.registry.users import User, authenticate
from meterhub.settings import Settings
from meterhub.times import DAY_US, now_us

ORIGIN_DAYS = 30
"""How long an address a user logged in from stays exempt from the account's lockout."""
MAX_ADDRESS_CHARS = 64
PURGE_EVERY = 128
"""Failures recorded by a process between two purges of counters that hold nothing."""
PURGE_ROWS = 10_000
"""Most rows of a table one purge drops."""
MEMO_SIZE = 4096
"""Locked token addresses remembered by a process (their bad tokens cost no query)."""
ACCOUNT, ADDRESS, TOKEN = "account:", "address:", "token:"


@dataclass(frozen=True, slots=True)
class Limit:
    """Failures allowed within ``window_us``, and the lockouts that follow (µs)."""

    failures: int
    window_us: int
    lockout_us: int
    lockout_max_us: int

    def lockout(self, streak: int) -> int:
        """The length of a lockout after ``streak`` lockouts in a row."""
        return min(self.lockout_us << min(streak, 40), self.lockout_max_us)


class Throttle:
    """The counters of one app (``app.state.throttle``); ``clock`` gives µs since the epoch
    (tests pass their own)."""

    def __init__(
        self, engine: Engine, settings: Settings, clock: Callable[[], int] = now_us
    ) -> None:
        self.engine = engine
        self.clock = clock
        window = round(settings.login_window * 1e6)
        lockout = round(settings.login_lockout * 1e6), round(settings.login_lockout_max * 1e6)
        self.account = Limit(settings.login_max_failures, window, *lockout)
        self.address = Limit(settings.login_max_failures_per_address, window, *lockout)
        self.token = Limit(settings.token_max_failures_per_address, window, *lockout)
        self._token_locks: dict[str, int] = {}
        self._recorded = 0

    def authenticate(self, conn: Connection, username: str, password: str, address: str) -> User:
        """The user with these credentials: ``Throttled`` while the address or the account
        is locked out, ``Unauthorized`` for wrong ones (counted in a transaction of its own,
        kept whatever ``conn``'s becomes). A success resets the account's counter and
        remembers the address, in ``conn``'s transaction."""
        address = address[:MAX_ADDRESS_CHARS]
        self._check_login(conn, username, address)
        try:
            user = authenticate(conn, username, password)
        except Unauthorized:
            self._login_failed(username, address)
            raise
        now = self.clock()
        conn.execute(delete(auth_failures).where(auth_failures.c.key == ACCOUNT + username))
        _remember_origin(conn, user.id, address, now)
        return user

    def token_refused(self, address: str) -> int | None:
        """After a bad token from ``address``: the seconds to wait while the address is
        locked out (answer 429), else ``None`` (answer 401), the failure being counted."""
        key, now = TOKEN + address[:MAX_ADDRESS_CHARS], self.clock()
        remembered = self._token_locks.get(key, 0)
        if remembered > now:
            return _seconds(remembered - now)
        with self.engine.begin() as conn:
            locked = _locks(conn, [key], now).get(key)
            until = locked or self._fail(conn, key, self.token, now)
        self._tidy(now)
        if until is not None:
            if len(self._token_locks) >= MEMO_SIZE:
                self._token_locks = {k: u for k, u in self._token_locks.items() if u > now}
            self._token_locks[key] = until
        return None if locked is None else _seconds(locked - now)

    def _check_login(self, conn: Connection, username: str, address: str) -> None:
        now = self.clock()
        locks = _locks(conn, [ACCOUNT + username, ADDRESS + address], now)
        if ADDRESS + address in locks:
            wait = _seconds(locks[ADDRESS + address] - now)
            raise Throttled(
                f"too many failed logins from this address: try again in {wait} s", wait
            )
        if ACCOUNT + username in locks and not _known_origin(conn, username, address, now):
            wait = _seconds(locks[ACCOUNT + username] - now)
            raise Throttled(f"too many failed logins of {username}: try again in {wait} s", wait)

    def _login_failed(self, username: str, address: str) -> None:
        now = self.clock()
        with self.engine.begin() as conn:  # keys in this order only: no deadlock
            self._fail(conn, ACCOUNT + username, self.account, now)
            self._fail(conn, ADDRESS + address, self.address, now)
        self._tidy(now)

    def _tidy(self, now: int) -> None:
        """Every ``PURGE_EVERY`` failures recorded here, drop what holds nothing any more,
        in a transaction of its own that skips rows others are changing."""
        self._recorded += 1
        if self._recorded % PURGE_EVERY == 0:
            with self.engine.begin() as conn:
                _purge(conn, now, self.account.window_us)

    def _fail(self, conn: Connection, key: str, limit: Limit, now: int) -> int | None:
        """Count a failure of ``key``; when it reaches the limit, lock the key and return
        until when (µs)."""
        failures, streak = _count(conn, key, limit, now)
        if failures < limit.failures:
            return None
        until = now + limit.lockout(streak)
        locked = conn.execute(
            update(auth_failures)
            .where(auth_failures.c.key == key, auth_failures.c.failures >= limit.failures)
            .values(
                failures=0,
                window_start=now,
                lockouts=auth_failures.c.lockouts + 1,
                locked_until=until,
            )
        )
        return until if locked.rowcount else None


def _count(conn: Connection, key: str, limit: Limit, now: int) -> tuple[int, int]:
    """One more failure of ``key`` in one statement (atomic across processes): its failures
    in the current window, and its lockouts in a row."""
    table = auth_failures.c
    fresh = table.window_start <= now - limit.window_us
    forgotten = table.locked_until <= now - limit.window_us
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = dialect.insert(auth_failures).values(
        key=key, failures=1, window_start=now, lockouts=0, locked_until=0
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.key],
        set_={
            "failures": _case(fresh, 1, table.failures + 1),
            "window_start": _case(fresh, now, table.window_start),
            "lockouts": _case(forgotten, 0, table.lockouts),
        },
    )
    row = conn.execute(stmt.returning(table.failures, table.lockouts)).one()
    return row.failures, row.lockouts


def _case(condition: ColumnElement[bool], then: Any, otherwise: Any) -> Case[Any]:
    return case((condition, then), else_=otherwise)


def _locks(conn: Connection, keys: Iterable[str], now: int) -> dict[str, int]:
    """The keys among ``keys`` locked at ``now``, and until when."""
    query = select(auth_failures.c.key, auth_failures.c.locked_until).where(
        auth_failures.c.key.in_(list(keys)), auth_failures.c.locked_until > now
    )
    return {row.key: row.locked_until for row in conn.execute(query)}


def _known_origin(conn: Connection, username: str, address: str, now: int) -> bool:
    """Whether ``username`` logged in from ``address`` in the last ``ORIGIN_DAYS`` days."""
    query = (
        select(login_origins.c.user_id)
        .join(users, users.c.id == login_origins.c.user_id)
        .where(
            users.c.username == username,
            login_origins.c.address == address,
            login_origins.c.last_login > now - ORIGIN_DAYS * DAY_US,
        )
    )
    return conn.execute(query).first() is not None


def _purge(conn: Connection, now: int, window_us: int) -> None:
    """Drop counters that hold nothing any more (their window and their streak are over),
    and addresses not logged in from for ``ORIGIN_DAYS`` days."""
    old = now - window_us
    idle = (
        select(auth_failures.c.key)
        .where(auth_failures.c.window_start <= old, auth_failures.c.locked_until <= old)
        .limit(PURGE_ROWS)
        .with_for_update(skip_locked=True)  # PostgreSQL; SQLite writes one at a time
    )
    conn.execute(delete(auth_failures).where(auth_failures.c.key.in_(idle.scalar_subquery())))
    origins = login_origins.c
    stale = (
        select(origins.user_id, origins.address)
        .where(origins.last_login <= now - ORIGIN_DAYS * DAY_US)
        .limit(PURGE_ROWS)
        .with_for_update(skip_locked=True)
    )
    conn.execute(delete(login_origins).where(tuple_(origins.user_id, origins.address).in_(stale)))


def _remember_origin(conn: Connection, user_id: int, address: str, now: int) -> None:
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = dialect.insert(login_origins).values(user_id=user_id, address=address, last_login=now)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[login_origins.c.user_id, login_origins.c.address],
            set_={"last_login": now},
        )
    )


def _seconds(us: int) -> int:
    """``Retry-After``: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(us / 1e6))
