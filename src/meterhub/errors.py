"""One exception tree for the whole product, translated once at each boundary.

MeterhubError
├── InvalidInput          bad input from a caller; names the field(s)  -> 400
│   ├── InvalidTime       a time that cannot be read
│   │   └── NotKept       a time before the raw retention horizon
│   ├── InvalidValue      a point value that is not a finite number
│   └── TooLarge          over a size limit                            -> 413
├── NotFound              the named thing does not exist               -> 404
├── Unauthorized          no credentials, or wrong ones                -> 401
│   └── BadToken          a token that is malformed, unknown or revoked
├── Forbidden             authenticated, but not allowed               -> 403
├── Throttled             too many failed logins or bad tokens lately  -> 429
└── MeterError            a meter could not be read (collector only)
    ├── MeterUnreachable  no HTTP answer: refused, reset, closed early
    │   └── MeterTimeout  no complete answer within the timeout
    └── MeterAnswerInvalid an answer came but cannot be used
        (HTTP status, non-JSON, wrong id, missing or non-numeric field)
"""

from __future__ import annotations

from collections.abc import Mapping


class MeterhubError(Exception):
    """Base of every error meterhub raises on purpose."""


class InvalidInput(MeterhubError):
    """Input that cannot be accepted; ``errors`` maps each bad field to its messages."""

    def __init__(self, errors: Mapping[str, str | list[str]]) -> None:
        self.errors = {
            field: [msgs] if isinstance(msgs, str) else list(msgs) for field, msgs in errors.items()
        }
        super().__init__("; ".join(f"{f}: {', '.join(m)}" for f, m in self.errors.items()))

    @classmethod
    def field(cls, name: str, message: str) -> InvalidInput:
        return cls({name: message})


class InvalidTime(InvalidInput):
    """A time that is neither µs since the epoch nor ISO 8601."""


class NotKept(InvalidTime):
    """A time whose points retention has dropped (only hourly rollups remain)."""


class InvalidValue(InvalidInput):
    """A point value that is not a finite number."""


class TooLarge(InvalidInput):
    """A request over one of the size limits."""


class NotFound(MeterhubError):
    """The named object does not exist."""


class UnknownSource(NotFound):
    """No data source has that id."""


class UnknownTag(NotFound):
    """No tag has that id."""


class SourceInactive(MeterhubError):
    """A deactivated data source or tag: its points are neither written nor read (connecting
    to the source still answers, with ``smtActive`` false)."""


class Unauthorized(MeterhubError):
    """No credentials, or credentials that are wrong, expired or revoked."""


class BadToken(Unauthorized):
    """A token was presented, but it is malformed, unknown or revoked (counted per address:
    see ``meterhub.registry.throttle``)."""


class Forbidden(MeterhubError):
    """Authenticated, but this needs an administrator."""


class Throttled(MeterhubError):
    """Too many failed attempts from this address or on this account: ``retry_after``
    seconds until the next attempt is heard."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MeterError(MeterhubError):
    """A meter could not be read; the message is what health reports as ``last_error``."""

    kind = "error"


class MeterUnreachable(MeterError):
    kind = "unreachable"


class MeterTimeout(MeterUnreachable):
    kind = "timeout"


class MeterAnswerInvalid(MeterError):
    kind = "invalid_answer"
