"""The I/O-free core: request building, batching, reply parsing, encoding, retries, tags.

Replies are built from recorded-style bytes; nothing here opens a connection.
"""

from __future__ import annotations

import json
import math
import pickle
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from meterhub_client import (
    AuthenticationError,
    DataInteractionClient,
    DataSourceNotActive,
    DataSourceNotFound,
    ErrorCode,
    MeterhubClientError,
    NoDataToSend,
    RequestData,
    ServerResponseError,
    Tag,
    TagId,
    TagNotFound,
    TransportError,
)
from meterhub_client import tags as tags_module
from meterhub_client._core import BaseClient, Batch, Call, Reply
from meterhub_client._encoding import (
    ValueInput,
    encode_point,
    encode_quality,
    encode_time,
    encode_value,
)

BASE = "http://127.0.0.1:8000"
OK = b'{"error": {"id": 0}}'


class Scalar:
    """Stands in for a numpy scalar: not a Python number, but ``.item()`` gives one."""

    def __init__(self, value: object, kind: str = "f") -> None:
        self.value = value
        self.dtype = type("dtype", (), {"kind": kind})()

    def item(self) -> object:
        return self.value

    def __repr__(self) -> str:
        return f"Scalar({self.value!r})"


@pytest.fixture
def core() -> BaseClient:
    return BaseClient(BASE)


def reply(body: Any, status: int = 200) -> Reply:
    return Reply(status, body if isinstance(body, bytes) else json.dumps(body).encode())


def ok(**fields: Any) -> Reply:
    return reply({"error": {"id": 0}, **fields})


def sent_points(batches: list[Batch]) -> list[tuple[str, Any]]:
    """(wire tag id, x) of every point in the batches' JSON bodies, in order."""
    points = []
    for batch in batches:
        body = json.loads(batch.call.content)
        assert body == batch.call.json
        for record in body["data"]:
            points += [(json.dumps(record["tagId"]), p["x"]) for p in record["data"]]
    return points


# -- request building ----------------------------------------------------------------------


@pytest.mark.parametrize("base", [BASE, BASE + "/", BASE + "//"])
def test_connect_call_never_doubles_the_slash(base: str) -> None:
    call = BaseClient(base).build_connect("1")
    assert call.method == "POST"
    assert call.url == "http://127.0.0.1:8000/smt/dataSources/connect"
    assert call.json == {"id": "1"}
    assert json.loads(call.content) == {"id": "1"}
    assert call.headers["Content-Type"] == "application/json"


def test_base_url_keeps_a_path_prefix() -> None:
    call = BaseClient("https://example.test/platform/").build_connect(7)
    assert call.url == "https://example.test/platform/smt/dataSources/connect"
    assert call.json == {"id": "7"}


@pytest.mark.parametrize(
    "base",
    ["127.0.0.1:8000", "ftp://h", "http://", "http://h/?a=1", "http://h#x", ""],
)
def test_bad_base_url_is_refused(base: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        BaseClient(base)


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 0},
        {"retries": -1},
        {"retries": True},
        {"backoff": -0.1},
        {"max_points_per_request": 0},
        {"max_points_per_request": 50_001},
    ],
)
def test_bad_client_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        BaseClient(BASE, **options)


def test_caller_headers_replace_the_defaults_whatever_their_case() -> None:
    core = BaseClient(BASE, headers={"user-agent": "connector/2", "X-Site": "north"})
    assert core.headers == {
        "Accept": "application/json",
        "user-agent": "connector/2",
        "X-Site": "north",
    }


@pytest.mark.parametrize("source", ["", None, True, 1.5])
def test_bad_data_source_id_is_refused(core: BaseClient, source: Any) -> None:
    with pytest.raises(ValueError, match="data source id"):
        core.build_connect(source)


def test_set_data_call_carries_every_tag_in_one_request(core: BaseClient) -> None:
    plain, composite, empty = (
        Tag("1.tag1"),
        Tag({"tagName": "kW", "parentObjectId": "44"}),
        Tag("e"),
    )
    plain.update(
        [{"x": "2018-06-26 17:16:00", "y": 5555, "q": 1}, {"x": 1718000000000000, "y": 12}]
    )
    composite.add_data(1, 2)
    [batch] = core.build_set_data([plain, composite, empty])
    assert batch.call.url == BASE + "/smt/data/set"
    assert batch.points == 3
    assert json.loads(batch.call.content) == {
        "data": [
            {
                "tagId": "1.tag1",
                "data": [
                    {"x": "2018-06-26T17:16:00", "y": 5555, "q": 1},
                    {"x": 1718000000000000, "y": 12, "q": 0},
                ],
            },
            {
                "tagId": {"tagName": "kW", "parentObjectId": "44"},
                "data": [{"x": 1, "y": 2, "q": 0}],
            },
        ]
    }


def test_set_data_batches_12000_points_over_3_tags() -> None:
    core = BaseClient(BASE, max_points_per_request=5000)
    tags = [Tag(f"t{n}") for n in range(3)]
    for tag in tags:
        tag.update({"x": i, "y": i} for i in range(4000))
    batches = list(core.build_set_data(tags))
    assert len(batches) == 3
    assert [b.points for b in batches] == [5000, 5000, 2000]
    for batch in batches:
        assert sum(len(r["data"]) for r in batch.call.json["data"]) == batch.points <= 5000
    points = sent_points(batches)
    expected = [(json.dumps(f"t{n}"), i) for n in range(3) for i in range(4000)]
    assert points == expected  # every point exactly once, in the order added


def test_set_data_splits_one_large_tag() -> None:
    tag = Tag("big")
    tag.update({"x": i, "y": 0} for i in range(7))
    batches = list(BaseClient(BASE, max_points_per_request=3).build_set_data(tag))
    assert [b.points for b in batches] == [3, 3, 1]
    assert [p[1] for p in sent_points(batches)] == list(range(7))


def test_set_data_sends_a_tag_listed_twice_once(core: BaseClient) -> None:
    tag = Tag("t")
    tag.add_data(1, 1)
    [batch] = core.build_set_data([tag, tag])
    assert batch.points == 1


def test_set_data_without_points_raises_no_data_to_send(core: BaseClient) -> None:
    with pytest.raises(NoDataToSend):
        core.build_set_data([Tag("a"), Tag("b")])
    with pytest.raises(NoDataToSend):
        core.build_set_data([])


def test_set_data_refuses_what_is_not_a_tag(core: BaseClient) -> None:
    with pytest.raises(TypeError, match="Tag"):
        core.build_set_data([{"id": "a"}])  # type: ignore[list-item]


def test_get_data_call_from_the_readme_flow(core: BaseClient) -> None:
    tags = core.create_tags(
        [{"id": "a", "attributes": {}}, {"id": {"tagName": "t", "parentObjectId": "o"}}]
    )
    request = core.create_request_data(tag_id=[tag.id for tag in tags])
    request.update(
        from_time=100, to_time=1000000, max_count=100, time_step=100000, format_param=True
    )
    call = core.build_get_data(request, {})
    assert call.url == BASE + "/smt/data/get"
    assert json.loads(call.content) == {
        "params": {
            "tagId": ["a", {"tagName": "t", "parentObjectId": "o"}],
            "from": 100,
            "to": 1000000,
            "maxCount": 100,
            "timeStep": 100000,
            "format": True,
        }
    }


def test_get_data_takes_tags_as_ids(core: BaseClient) -> None:
    tags = [Tag("a"), Tag(TagId("t", "o"))]
    call = core.build_get_data(None, {"tag_id": tags})
    assert call.json == {"params": {"tagId": ["a", {"tagName": "t", "parentObjectId": "o"}]}}
    assert core.build_get_data(None, {"tag_id": tags[0]}).json == {"params": {"tagId": "a"}}


def test_get_data_keywords_override_a_copy(core: BaseClient) -> None:
    request = core.create_request_data("a", max_count=5, actual=True)
    call = core.build_get_data(request, {"max_count": 9, "actual": None, "value": [1, 2.5]})
    assert call.json == {"params": {"tagId": "a", "maxCount": 9, "value": [1, 2.5]}}
    assert (request.max_count, request.actual, request.value) == (5, True, None)


def test_get_data_from_keywords_alone(core: BaseClient) -> None:
    call = core.build_get_data(None, {"tag_id": "a", "from_time": "100"})
    assert call.json == {"params": {"tagId": "a", "from": 100}}
    with pytest.raises(TypeError, match="tag_id"):
        core.build_get_data(None, {"max_count": 3})
    with pytest.raises(TypeError, match="RequestData"):
        core.build_get_data({"tag_id": "a"}, {})  # type: ignore[arg-type]


# -- reply parsing -------------------------------------------------------------------------

CONNECTED = {
    "error": {"id": 0},
    "attributes": {"smtActive": True, "smtJsonConfigString": "{}"},
    "tags": [
        {"id": "tag-1", "attributes": {"smtTagValueTypeCode": 1}},
        {"id": {"tagName": "kW", "parentObjectId": "44"}, "attributes": {}},
    ],
}


def test_connect_reply_is_returned_whole_and_gives_tags(core: BaseClient) -> None:
    call = core.build_connect("1")
    answer = core.parse_connect(call, reply(CONNECTED))
    assert answer == CONNECTED
    tags = core.create_tags(answer["tags"])
    assert [t.id for t in tags] == ["tag-1", TagId("kW", "44")]
    assert tags[0].attributes == {"smtTagValueTypeCode": 1}
    assert tags[1].wire_id == {"tagName": "kW", "parentObjectId": "44"}


def test_connect_to_an_inactive_source(core: BaseClient) -> None:
    call = core.build_connect("9")
    inactive = {**CONNECTED, "attributes": {"smtActive": False}}
    with pytest.raises(DataSourceNotActive) as caught:
        core.parse_connect(call, reply(inactive))
    assert caught.value.error_id == 3
    assert "'9'" in caught.value.message


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"id": 0}, "attributes": {}},
        {"error": {"id": 0}, "tags": {}},
        {"error": {"id": 0}, "tags": [{"attributes": {}}]},
        {"error": {"id": 0}, "tags": [{"id": {"tagName": "t"}}]},
        {"error": {"id": 0}, "tags": [], "attributes": []},
    ],
)
def test_connect_reply_without_usable_tags_is_a_transport_error(
    core: BaseClient, body: dict[str, Any]
) -> None:
    with pytest.raises(TransportError, match="malformed"):
        core.parse_connect(core.build_connect("1"), reply(body))


@pytest.mark.parametrize(
    ("error_id", "kind"),
    [
        (1, ServerResponseError),
        (2, DataSourceNotFound),
        (3, DataSourceNotActive),
        (4, TagNotFound),
        (5, ServerResponseError),
        (6, ServerResponseError),
        (7, ServerResponseError),
        (8, ServerResponseError),
        (99, ServerResponseError),
    ],
)
def test_application_errors_map_to_exceptions(
    core: BaseClient, error_id: int, kind: type[ServerResponseError]
) -> None:
    call = core.build_get_data(None, {"tag_id": "a"})
    with pytest.raises(kind) as caught:
        core.parse_get_data(call, reply({"error": {"id": error_id, "message": "nope"}}))
    assert type(caught.value) is kind
    assert (caught.value.error_id, caught.value.message) == (error_id, "nope")
    assert str(caught.value) == f"nope (error {error_id})"
    assert isinstance(caught.value, MeterhubClientError)


def test_application_error_without_message_gets_one(core: BaseClient) -> None:
    call = core.build_connect("1")
    with pytest.raises(ServerResponseError, match="too large") as caught:
        core.parse_connect(call, reply({"error": {"id": 7}}))
    assert caught.value.error_id == ErrorCode.TOO_LARGE


@pytest.mark.parametrize("status", [301, 400, 404, 500, 503])
def test_non_2xx_status_is_a_transport_error(core: BaseClient, status: int) -> None:
    call = core.build_connect("1")
    with pytest.raises(TransportError, match=f"HTTP {status}") as caught:
        core.parse_connect(call, reply(CONNECTED, status))  # even with a success body
    assert caught.value.status_code == status


REFUSED = {"error": {"id": 9, "message": "invalid or revoked token"}}
TOKEN = {"Authorization": "token 1:" + "ab" * 20}


@pytest.mark.parametrize(
    ("headers", "token_sent", "problem"),
    [
        ({}, False, "no token sent (pass headers={'Authorization': 'token <user_id>:<40 hex>'})"),
        (TOKEN, True, "token refused"),
        ({"authorization": TOKEN["Authorization"]}, True, "token refused"),
    ],
)
@pytest.mark.parametrize("status", [401, 200])
def test_error_9_is_an_authentication_error_naming_the_problem(
    headers: dict[str, str], token_sent: bool, problem: str, status: int
) -> None:
    core = BaseClient(BASE, headers=headers)
    calls = [core.build_connect("1"), core.build_get_data(None, {"tag_id": "a"})]
    tag = Tag("a")
    tag.add_data(1, 1)
    [batch] = core.build_set_data([tag])
    for call in [*calls, batch.call]:
        with pytest.raises(AuthenticationError) as caught:
            core.parse_get_data(call, reply(REFUSED, status))
        error = caught.value
        assert (error.error_id, error.message) == (
            ErrorCode.NOT_AUTHENTICATED,
            "invalid or revoked token",
        )
        assert (error.token_sent, error.status_code) == (token_sent, status)
        assert str(error) == f"{problem}: invalid or revoked token (error 9)"
        assert isinstance(error, MeterhubClientError)
        assert not isinstance(error, ServerResponseError | TransportError)
    with pytest.raises(AuthenticationError):
        batch.acknowledge(reply(REFUSED, status))
    assert tag.data == [{"x": 1, "y": 1, "q": 0}]  # kept for when the token is fixed
    assert core.retry_delay(0, status_code=status) is None  # never retried


@pytest.mark.parametrize(
    "body", [b"<html>401 Authorization Required</html>", b"{}", b'{"error": {"id": 9}}']
)
def test_a_401_without_the_platforms_message_quotes_the_answer(body: bytes) -> None:
    call = BaseClient(BASE).build_connect("1")
    with pytest.raises(AuthenticationError) as caught:
        BaseClient(BASE).parse_connect(call, reply(body, 401))
    assert caught.value.message == f"HTTP 401: {body.decode()!r}"
    assert not caught.value.token_sent


def test_authentication_error_survives_pickling() -> None:
    error = AuthenticationError("invalid or revoked token", token_sent=True, status_code=401)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.token_sent, copy.status_code) == (
        AuthenticationError,
        str(error),
        True,
        401,
    )


def test_invalid_json_is_a_transport_error_keeping_the_cause(core: BaseClient) -> None:
    call = core.build_connect("1")
    with pytest.raises(TransportError, match="not JSON") as caught:
        core.parse_connect(call, reply(b"<html>gateway</html>"))
    assert isinstance(caught.value.__cause__, json.JSONDecodeError)
    assert caught.value.status_code == 200


@pytest.mark.parametrize(
    "body", [b"[]", b"{}", b'{"error": 0}', b'{"error": {"id": "0"}}', b'{"error": {"id": false}}']
)
def test_reply_without_integer_error_id_is_a_transport_error(core: BaseClient, body: bytes) -> None:
    with pytest.raises(TransportError, match=r"error\.id"):
        core.parse_connect(core.build_connect("1"), reply(body))


def test_get_data_returns_the_data_list_verbatim(core: BaseClient) -> None:
    data = [{"tagId": "a", "excess": False, "data": [{"x": 100000, "y": 1, "q": 0}]}]
    call = core.build_get_data(None, {"tag_id": "a"})
    assert core.parse_get_data(call, ok(data=data)) == data
    with pytest.raises(TransportError, match="data is not a list"):
        core.parse_get_data(call, ok(data={}))


def test_acknowledged_batch_removes_its_points_and_counts_them(core: BaseClient) -> None:
    tag = Tag("a")
    tag.update([{"x": 1, "y": 1}, {"x": 2, "y": 2}])
    [batch] = core.build_set_data([tag])
    assert batch.acknowledge(ok(written=2)) == 2
    assert tag.data == []
    tag.add_data(3, 3)
    [batch] = core.build_set_data([tag])
    assert batch.acknowledge(reply(OK)) == 1  # no "written": the number sent


@pytest.mark.parametrize(
    "failure",
    [reply({"error": {"id": 4, "message": "unknown tag"}}), reply(OK, 503), reply(b"nope")],
)
def test_failed_batch_keeps_every_point(core: BaseClient, failure: Reply) -> None:
    tag = Tag("a")
    tag.update([{"x": 1, "y": 1}, {"x": 2, "y": 2}])
    [batch] = core.build_set_data([tag])
    with pytest.raises(MeterhubClientError):
        batch.acknowledge(failure)
    assert [p["x"] for p in tag.data] == [1, 2]


def test_points_added_during_the_request_stay_buffered(core: BaseClient) -> None:
    tag = Tag("a")
    tag.add_data(1, 1)
    [batch] = core.build_set_data([tag])
    tag.add_data(2, 2)  # while the request is in flight
    tag.add_data(1, 9)  # same time again: a new point, to be sent next time
    batch.acknowledge(ok(written=1))
    assert tag.data == [{"x": 2, "y": 2, "q": 0}, {"x": 1, "y": 9, "q": 0}]


def test_acknowledging_after_clear_data_removes_nothing_new(core: BaseClient) -> None:
    tag = Tag("a")
    tag.add_data(1, 1)
    [batch] = core.build_set_data([tag])
    tag.clear_data()
    tag.add_data(5, 5)
    batch.acknowledge(ok(written=1))
    assert tag.data == [{"x": 5, "y": 5, "q": 0}]


# -- retries -------------------------------------------------------------------------------

REQUEST = httpx.Request("POST", BASE)


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused", request=REQUEST),
        httpx.ConnectTimeout("slow", request=REQUEST),
        httpx.ReadTimeout("slow", request=REQUEST),
        httpx.ReadError("reset", request=REQUEST),
        httpx.RemoteProtocolError("closed early", request=REQUEST),
    ],
)
def test_connection_errors_are_retried_with_exponential_backoff(error: Exception) -> None:
    core = BaseClient(BASE, retries=3, backoff=0.5)
    delays = [core.retry_delay(attempt, error=error) for attempt in range(4)]
    assert delays == [0.5, 1.0, 2.0, None]


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        (500, True),
        (502, True),
        (503, True),
        (599, True),
        (200, False),
        (400, False),
        (401, False),
        (404, False),
        (429, False),
    ],
)
def test_only_5xx_statuses_are_retried(status: int, retried: bool) -> None:
    delay = BaseClient(BASE).retry_delay(0, status_code=status)
    assert (delay is not None) is retried


def test_errors_that_another_attempt_cannot_fix_are_not_retried() -> None:
    core = BaseClient(BASE)
    assert core.retry_delay(0, error=httpx.UnsupportedProtocol("x", request=REQUEST)) is None
    assert core.retry_delay(0, error=httpx.LocalProtocolError("x", request=REQUEST)) is None
    assert BaseClient(BASE, retries=0).retry_delay(0, status_code=503) is None


def test_backoff_is_capped() -> None:
    assert BaseClient(BASE, retries=100, backoff=1).retry_delay(20, status_code=500) == 30.0


def test_transport_error_names_the_call_and_the_cause(core: BaseClient) -> None:
    call = core.build_connect("1")
    error = core.transport_error(call, httpx.ConnectError("refused", request=REQUEST), 4)
    assert isinstance(error, MeterhubClientError)
    assert (
        str(error)
        == f"POST {BASE}/smt/dataSources/connect: ConnectError: refused (after 4 attempt(s))"
    )
    assert error.status_code is None


# -- time and value encoding ---------------------------------------------------------------

MSK = timezone(timedelta(hours=3))


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        (datetime(2018, 6, 26, 17, 16, tzinfo=UTC), 1530033360000000),
        (datetime(2018, 6, 26, 20, 16, 0, 5, tzinfo=MSK), 1530033360000005),
        (datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), -1),
        (datetime(2018, 6, 26, 17, 16), "2018-06-26T17:16:00"),
        (datetime(2018, 6, 26, 17, 16, 0, 250000), "2018-06-26T17:16:00.250000"),
        (date(2018, 6, 26), "2018-06-26T00:00:00"),
        (1718000000000000, 1718000000000000),
        (0, 0),
        ("100", 100),
        (" -5 ", -5),
        ("2018-06-26 17:16:00", "2018-06-26T17:16:00"),
        ("2018-06-26", "2018-06-26T00:00:00"),
        ("2018-06-26T17:16:00Z", 1530033360000000),
        ("2018-06-26T20:16:00+03:00", 1530033360000000),
        (Scalar(1718000000000000, "i"), 1718000000000000),
        (Scalar(datetime(2018, 6, 26, 17, 16), "M"), "2018-06-26T17:16:00"),
    ],
)
def test_time_encoding(given: Any, sent: int | str) -> None:
    assert encode_time(given) == sent
    assert type(encode_time(given)) is type(sent)


@pytest.mark.parametrize(
    "given",
    [
        True,
        1.5,
        None,
        "yesterday",
        "2018-13-01",
        "",
        2**63,
        Scalar(10**18, "M"),
        Scalar(None, "M"),
        object(),
    ],
)
def test_bad_times_are_refused(given: Any) -> None:
    with pytest.raises(ValueError, match="bad time"):
        encode_time(given)


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        (5, 5),
        (-2.5, -2.5),
        (True, 1),
        (False, 0),
        (Decimal("12.50"), 12.5),
        (Decimal("12.00"), 12),
        (Decimal("1E+3"), 1000),
        (Scalar(7, "i"), 7),
        (Scalar(0.25), 0.25),
        (Scalar(True, "b"), 1),
        (ErrorCode.TOO_LARGE, 7),
        (2**70, 2**70),
    ],
)
def test_value_encoding(given: Any, sent: int | float) -> None:
    assert encode_value(given) == sent
    assert type(encode_value(given)) is type(sent)


@pytest.mark.parametrize(
    "given",
    [
        float("nan"),
        float("inf"),
        float("-inf"),
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("1E+400"),
        10**400,
        Scalar(float("nan")),
        "5",
        None,
        [1],
        int,
        object(),
    ],
)
def test_bad_values_are_refused(given: Any) -> None:
    with pytest.raises(ValueError, match="bad value"):
        encode_value(given)


@pytest.mark.parametrize(("given", "sent"), [(0, 0), (192, 192), (-1, -1), (Scalar(3, "i"), 3)])
def test_quality_encoding(given: Any, sent: int) -> None:
    assert encode_quality(given) == sent


@pytest.mark.parametrize("given", [True, 1.0, "0", None, 2**15, -(2**15) - 1])
def test_bad_qualities_are_refused(given: Any) -> None:
    with pytest.raises(ValueError, match="bad quality"):
        encode_quality(given)


def test_wire_point_json_is_strict() -> None:
    point = encode_point(datetime(2018, 6, 26, tzinfo=UTC), Decimal("0.1"), 0)
    assert json.dumps(point, allow_nan=False) == '{"x": 1529971200000000, "y": 0.1, "q": 0}'


def test_add_data_fails_fast_naming_the_value() -> None:
    tag = Tag("a")
    with pytest.raises(ValueError, match="nan"):
        tag.add_data(1, float("nan"))
    with pytest.raises(ValueError, match="'soon'"):
        tag.add_data("soon", 1)
    assert tag.data == []


def test_update_is_all_or_nothing() -> None:
    tag = Tag("a")
    with pytest.raises(ValueError, match="point #1"):
        tag.update([{"x": 1, "y": 1}, {"x": 2, "y": float("inf")}])
    with pytest.raises(ValueError, match="'x', 'y'"):
        tag.update([{"x": 1, "y": 1, "quality": 3}])
    with pytest.raises(ValueError, match="'x', 'y'"):
        tag.update([{"y": 1}])
    assert tag.data == []


def test_data_is_a_copy() -> None:
    tag = Tag("a", {"unit": "kW"})
    tag.add_data(1, 2, q=1)
    tag.data[0]["y"] = 99
    tag.data.clear()
    assert tag.data == [{"x": 1, "y": 2, "q": 1}]
    assert len(tag) == 1
    tag.clear_data()
    assert tag.data == []


@pytest.mark.parametrize(
    "tag_id",
    [
        "",
        5,
        None,
        {"tagName": "t"},
        {"tagName": "t", "parentObjectId": "o", "x": 1},
        {"tagName": "", "parentObjectId": "o"},
    ],
)
def test_bad_tag_ids_are_refused(tag_id: Any) -> None:
    with pytest.raises(ValueError, match="tag id"):
        Tag(tag_id)


# -- RequestData ---------------------------------------------------------------------------


def test_request_data_normalises_its_attributes(core: BaseClient) -> None:
    request = core.create_request_data(
        tag_id=("a", {"tagName": "t", "parentObjectId": "o"}),
        from_time=datetime(2018, 6, 26, 17, tzinfo=UTC),
        to_time="2018-06-27 00:00",
        time_step=timedelta(minutes=1),
        value=Decimal("2"),
        actual=False,
    )
    assert request.tag_id == ["a", TagId("t", "o")]
    assert request.from_time == 1530032400000000
    assert request.to_time == "2018-06-27T00:00:00"
    assert request.time_step == 60_000_000
    assert request.value == 2
    assert request.to_params() == {
        "tagId": ["a", {"tagName": "t", "parentObjectId": "o"}],
        "from": 1530032400000000,
        "to": "2018-06-27T00:00:00",
        "timeStep": 60_000_000,
        "value": 2,
        "actual": False,
    }


@pytest.mark.parametrize(
    "change",
    [
        {"tag_id": []},
        {"tag_id": 5},
        {"from_time": "never"},
        {"to_time": float("nan")},
        {"max_count": 0},
        {"max_count": True},
        {"max_count": "10"},
        {"time_step": -1},
        {"time_step": timedelta(0)},
        {"value": int},
        {"value": float("inf")},
        {"value": []},
        {"format_param": "yes"},
        {"actual": 1},
    ],
)
def test_request_data_update_validates_and_changes_nothing_on_error(
    change: dict[str, Any],
) -> None:
    request = RequestData(tag_id="a", max_count=5)
    before = request.model_copy()
    valid: dict[str, Any] = {"actual": True} if "format_param" in change else {"format_param": True}
    with pytest.raises(ValidationError, match=next(iter(change))):
        request.update(**valid, **change)  # one valid change, one bad: neither applies
    assert request == before


def test_request_data_update_changes_only_what_is_given() -> None:
    request = RequestData(tag_id="a", max_count=5, actual=True)
    request.update(max_count=10, actual=None)
    assert (request.tag_id, request.max_count, request.actual) == ("a", 10, None)


def test_request_data_unknown_keyword_is_a_type_error() -> None:
    request = RequestData(tag_id="a")
    with pytest.raises(TypeError, match="max_points"):
        request.update(max_points=3)  # type: ignore[call-arg]


def test_request_data_assignment_is_validated() -> None:
    request = RequestData(tag_id="a")
    request.from_time = "2018-06-26T17:16:00+00:00"
    assert request.to_params()["from"] == 1530033360000000
    with pytest.raises(ValidationError):
        request.max_count = -1
    with pytest.raises(ValidationError):
        RequestData(tag_id="a", colour="red")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        RequestData()  # type: ignore[call-arg]


# -- thread safety ---------------------------------------------------------------------------


@pytest.fixture
def eager_thread_switching() -> Iterator[None]:
    """Switch threads every microsecond so adds and acknowledgements interleave."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("eager_thread_switching")
def test_concurrent_adds_while_sending_lose_and_duplicate_nothing() -> None:
    core = BaseClient(BASE, max_points_per_request=97)
    tags = [Tag(f"t{n}") for n in range(3)]
    writers, per_writer = 6, 3000
    done = threading.Event()
    sent: Counter[tuple[str, Any]] = Counter()

    def write(writer: int) -> None:
        for i in range(per_writer):
            tags[i % 3].add_data(writer * per_writer + i, i)

    def send_everything() -> None:
        try:
            batches = list(core.build_set_data(tags))
        except NoDataToSend:
            return
        for batch in batches:
            sent.update(sent_points([batch]))
            batch.acknowledge(ok(written=batch.points))

    def send_until_done() -> None:
        while not done.is_set():
            send_everything()

    sender = threading.Thread(target=send_until_done)
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    sender.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    sender.join()
    send_everything()  # what arrived after the sender's last snapshot

    assert all(len(tag) == 0 for tag in tags)
    assert max(sent.values()) == 1  # nothing sent twice
    assert len(sent) == writers * per_writer  # nothing lost
    expected = {
        (json.dumps(f"t{i % 3}"), w * per_writer + i)
        for w in range(writers)
        for i in range(per_writer)
    }
    assert set(sent) == expected


def test_sync_client_accepts_a_transport_and_closes() -> None:
    transport = httpx.HTTPTransport()
    with DataInteractionClient(
        BASE + "/", transport=transport, headers={"X-Connector": "c1"}
    ) as client:
        assert client._http._transport is transport
        assert client.base_url == BASE
        assert client.headers["X-Connector"] == "c1"
    assert client._http.is_closed


def test_call_repr_hides_the_body() -> None:
    call = Call.post(BASE, {"id": "1"})
    assert "content" not in repr(call)


@pytest.mark.parametrize(
    ("x", "y", "q"),
    [
        (1_718_000_000_000_000, 5.13, 0),
        (-(2**63), 1e16, -32768),
        (2**63 - 1, -0.0, 32767),
        (0, 5e-324, 7),
        (1, 1.7976931348623157e308, 0),
        (2, 1e-07, 0),
        (3, 0.1 + 0.2, 0),
    ],
)
@pytest.mark.parametrize("writer", ["msgspec", "repr"])
def test_common_points_are_sent_as_encode_point_would_send_them(
    x: int, y: float, q: int, writer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``add_data`` checks the usual point (int µs, float, int quality) itself; the batch
    carries ``encode_point``'s answer, the float bit for bit, whichever writes the JSON."""
    if writer == "repr":
        monkeypatch.setattr(tags_module, "_FAST_ENCODE", None)
    tag = Tag("a")
    tag.add_data(x, y, q)
    [batch] = BaseClient(BASE).build_set_data(tag)
    assert batch.call.content.startswith(b'{"data":[{"tagId":"a","data":[{"x":')
    [record] = json.loads(batch.call.content)["data"]
    assert record == {"tagId": "a", "data": [encode_point(x, y, q)]}
    assert repr(record["data"][0]["y"]) == repr(y)  # -0.0 stays -0.0
    assert tag.data == [{"x": x, "y": y, "q": q}]


@pytest.mark.parametrize("writer", ["msgspec", "repr"])
def test_other_values_are_sent_as_encode_point_encodes_them(
    writer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if writer == "repr":
        monkeypatch.setattr(tags_module, "_FAST_ENCODE", None)
    tag = Tag("a")
    values: list[ValueInput] = [2**70, Decimal("1.5"), Decimal(7), True, 3]
    for n, value in enumerate(values):
        tag.add_data(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=n), value, 1)
    [batch] = BaseClient(BASE).build_set_data(tag)
    [record] = json.loads(batch.call.content)["data"]
    sent = [(point["y"], type(point["y"])) for point in record["data"]]
    assert sent == [(2**70, int), (1.5, float), (7, int), (1, int), (3, int)]
    assert record["data"][0] == encode_point(datetime(2026, 1, 1, tzinfo=UTC), 2**70, 1)


@pytest.mark.parametrize(
    ("x", "y", "q"),
    [(2**63, 1.0, 0), (1, math.inf, 0), (1, math.nan, 0), (1, 1.0, 2**15), (True, 1.0, 0)],
)
def test_points_outside_the_common_form_are_still_refused(x: Any, y: Any, q: Any) -> None:
    tag = Tag("a")
    with pytest.raises(ValueError, match="bad"):
        tag.add_data(x, y, q)
    assert len(tag) == 0
