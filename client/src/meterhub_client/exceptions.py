"""Every error the client raises on purpose, as one tree.

::

    MeterhubClientError               base: catch this to catch everything below
    ├── ServerResponseError           the platform answered {"error": {"id": N, "message": ...}}
    │   │                             with N != 0; carries error_id and message
    │   ├── DataSourceNotFound        error 2: no data source has that id
    │   ├── DataSourceNotActive       error 3 (or connect answered smtActive: false)
    │   └── TagNotFound               error 4: a tag id is unknown
    ├── AuthenticationError           error 9 (HTTP 401): no token was sent, or the
    │                                 platform refused it; never retried
    ├── NoDataToSend                  set_data was called while no tag holds a point
    └── TransportError                no usable HTTP answer: connection failed or timed out
                                      after every retry, a non-2xx status (after retries
                                      for 5xx), or a body that is not the platform's JSON;
                                      the underlying exception is ``__cause__``

Bad input is refused before anything is sent: a point whose time or value cannot be
encoded raises ``ValueError`` from ``Tag.add_data`` / ``Tag.update``, and bad query
parameters raise ``pydantic.ValidationError`` (a ``ValueError``) from ``RequestData``.

The other application error ids keep the base class; compare ``error_id`` with
:class:`ErrorCode` to tell them apart.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ErrorCode(IntEnum):
    """The platform's ``error.id`` values."""

    OK = 0
    BAD_PARAMETER = 1
    UNKNOWN_DATA_SOURCE = 2
    DATA_SOURCE_NOT_ACTIVE = 3
    UNKNOWN_TAG = 4
    BAD_TIME = 5
    BAD_VALUE = 6
    TOO_LARGE = 7
    INTERNAL = 8
    NOT_AUTHENTICATED = 9


class MeterhubClientError(Exception):
    """Base of every error the client raises on purpose."""


class ServerResponseError(MeterhubClientError):
    """The platform refused the request: ``{"error": {"id": error_id, "message": message}}``.

    Raised for any non-zero ``error_id``; ids 2, 3 and 4 raise the subclasses below.
    """

    def __init__(self, error_id: int, message: str) -> None:
        self.error_id = error_id
        self.message = message
        super().__init__(f"{message} (error {error_id})")

    def __reduce__(self) -> tuple[type[ServerResponseError], tuple[int, str]]:
        return type(self), (self.error_id, self.message)


class DataSourceNotFound(ServerResponseError):
    """Error 2: no data source has the requested id."""


class DataSourceNotActive(ServerResponseError):
    """Error 3: the data source exists but is deactivated."""


class TagNotFound(ServerResponseError):
    """Error 4: the platform does not know a tag named in the request."""


class AuthenticationError(MeterhubClientError):
    """The platform wants a token (error 9, HTTP 401) and none was sent (``token_sent``
    false: pass ``headers={"Authorization": "token <user_id>:<40 hex>"}``), or it refused
    the one sent (wrong, malformed or revoked). ``message`` is the platform's own words,
    ``status_code`` the HTTP status. Another attempt would fail alike: never retried.
    """

    def __init__(self, message: str, *, token_sent: bool, status_code: int | None) -> None:
        self.error_id = ErrorCode.NOT_AUTHENTICATED
        self.message = message
        self.token_sent = token_sent
        self.status_code = status_code
        problem = (
            "token refused"
            if token_sent
            else "no token sent (pass headers={'Authorization': 'token <user_id>:<40 hex>'})"
        )
        super().__init__(f"{problem}: {message} (error 9)")

    def __reduce__(self) -> tuple[Any, ...]:
        return _authentication_error, (self.message, self.token_sent, self.status_code)


def _authentication_error(
    message: str, token_sent: bool, status_code: int | None
) -> AuthenticationError:
    return AuthenticationError(message, token_sent=token_sent, status_code=status_code)


class NoDataToSend(MeterhubClientError):
    """``set_data`` found no buffered point in any of the tags it was given."""


class TransportError(MeterhubClientError):
    """No usable answer from the platform.

    ``status_code`` is the HTTP status when one was received (``None`` when the
    connection failed); the original exception, if any, is ``__cause__``.
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(message)


ERRORS_BY_ID: dict[int, type[ServerResponseError]] = {
    ErrorCode.UNKNOWN_DATA_SOURCE: DataSourceNotFound,
    ErrorCode.DATA_SOURCE_NOT_ACTIVE: DataSourceNotActive,
    ErrorCode.UNKNOWN_TAG: TagNotFound,
}


def server_error(error_id: int, message: str) -> ServerResponseError:
    """The exception for an application error id: a subclass for ids 2-4, else the base."""
    return ERRORS_BY_ID.get(error_id, ServerResponseError)(error_id, message)
