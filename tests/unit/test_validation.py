"""Request validation: task bodies, resource names, requirement lines, API key headers."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from launch.server.api.auth import key_from_header
from launch.server.domain.bundles import clean_requirements
from launch.server.domain.errors import InvalidRequest
from launch.server.domain.names import validate_name
from launch.server.domain.tasks import validate_task_request
from launch.server.domain.uploads import key_from_location

# -- validate_task_request ---------------------------------------------------------------------------------


def test_args_request_defaults_to_pickled() -> None:
    assert validate_task_request({"args": {"x": 1}}) == {"args": {"x": 1}, "return_pickled": True}


def test_args_request_keeps_return_pickled_false_and_drops_unknown_keys() -> None:
    body = {"args": {}, "return_pickled": False, "callback_url": "x", "extra": 1}
    assert validate_task_request(body) == {"args": {}, "return_pickled": False}


def test_url_request() -> None:
    assert validate_task_request({"url": "https://example.com/a.png", "return_pickled": False}) == {
        "url": "https://example.com/a.png", "return_pickled": False}


def test_url_wins_when_both_are_sent() -> None:
    assert validate_task_request({"url": "http://h/x", "args": {"a": 1}}) == {"url": "http://h/x",
                                                                              "return_pickled": True}


@pytest.mark.parametrize(("body", "message"), [
    (None, "JSON object"),
    ([{"args": {}}], "JSON object"),
    ("args", "JSON object"),
    ({}, "exactly one"),
    ({"return_pickled": False}, "exactly one"),
    ({"args": [1, 2]}, "args must be a JSON object"),
    ({"args": "x=1"}, "args must be a JSON object"),
    ({"args": 3}, "args must be a JSON object"),
    ({"url": ""}, "url"),
    ({"url": 7}, "url"),
    ({"url": ["http://h"]}, "url"),
    ({"args": {}, "return_pickled": "yes"}, "return_pickled"),
    ({"args": {}, "return_pickled": 1}, "return_pickled"),
    ({"args": {}, "return_pickled": None}, "return_pickled"),
])
def test_invalid_task_requests(body: Any, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_task_request(body)
    assert message in caught.value.detail


# -- validate_name ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "A", "0", "my-endpoint", "my_bundle.v2", "x" * 128, "9lives", "a.b-c_d"])
def test_valid_names(name: str) -> None:
    assert validate_name("endpoint", name) == name


@pytest.mark.parametrize("name", ["", "-a", ".a", "_a", "a b", "a/b", "a?b", "a%2Fb", "é", "x" * 129, "a\n",
                                  "../etc", None, 5])
def test_invalid_names(name: Any) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_name("bundle", name)
    assert "invalid bundle name" in caught.value.detail


def test_reserved_name() -> None:
    with pytest.raises(InvalidRequest, match="reserved"):
        validate_name("endpoint", "creation_logs")


# -- clean_requirements -------------------------------------------------------------------------------------


def test_clean_requirements_drops_blanks_and_comments_and_strips() -> None:
    lines = ["numpy==2.2.5", "", "   ", "# a comment", "  # indented comment", "  requests>=2  ",
             "pkg; python_version>'3'"]
    assert clean_requirements(lines) == ["numpy==2.2.5", "requests>=2", "pkg; python_version>'3'"]


def test_clean_requirements_none_and_empty() -> None:
    assert clean_requirements(None) == []
    assert clean_requirements([]) == []


@pytest.mark.parametrize("lines", ["numpy", [1], ["ok", None], {"numpy": "1"}])
def test_clean_requirements_refuses_non_string_lists(lines: Any) -> None:
    with pytest.raises(InvalidRequest, match="list of strings"):
        clean_requirements(lines)


# -- key_from_header ----------------------------------------------------------------------------------------


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(("header", "key"), [
    ("Bearer lk_abc", "lk_abc"),
    ("bearer lk_abc", "lk_abc"),
    ("BEARER   lk_abc  ", "lk_abc"),
    (basic("lk_abc"), "lk_abc"),
    (basic("lk_abc", "ignored-password"), "lk_abc"),
    ("basic " + base64.b64encode(b"lk_abc").decode(), "lk_abc"),  # no colon at all
])
def test_key_from_header(header: str, key: str) -> None:
    assert key_from_header(header) == key


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", "Basic", "Basic !!!not-base64", basic("", "password"),
    "Basic " + base64.b64encode(b"\xff\xfe:").decode(), "Token lk_abc", "lk_abc", "Digest user=lk_abc",
])
def test_key_from_header_refuses(header: str | None) -> None:
    assert key_from_header(header) is None


# -- owner names (API key users) ------------------------------------------------------------------------------


@pytest.mark.parametrize("owner", ["alice", "bob@example.com", "svc-1.prod_x", "a" * 128])
def test_valid_owner(owner: str) -> None:
    from launch.server.domain.owners import validate_owner

    assert validate_owner(owner) == owner


@pytest.mark.parametrize("owner", ["", "a b", "a/b", "../x", "a" * 129, "alice\n"])
def test_invalid_owner(owner: str) -> None:
    from launch.server.domain.owners import validate_owner

    with pytest.raises(InvalidRequest):
        validate_owner(owner)


# -- upload locations ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("location", [
    "s3://launch/uploads/alice/bundles//x", "s3://launch/uploads/alice/bundles/%2e%2e",
    "s3://launch/uploads/alice/bundles/a\x00b", "s3://launch/uploads/alice/bundles/" + "a" * 5000,
    "s3://launch/uploads/alice/bundles/../../etc/passwd", "s3://launch/uploads/alice/other/abc",
    "s3://launch/uploads/bob/bundles/abc", "s3://launch/uploads/alice/bundles/abc/def",
], ids=lambda loc: repr(loc[:60]))
def test_locations_that_are_no_upload_key_are_refused(location: str) -> None:
    with pytest.raises(InvalidRequest, match="not one of your uploads"):
        key_from_location("alice", location)


def test_upload_locations_give_their_key() -> None:
    assert key_from_location("alice", "s3://launch/uploads/alice/bundles/0123abcd") == \
        "uploads/alice/bundles/0123abcd"
    assert key_from_location("alice", "s3://elsewhere/x") is None


def test_requirement_lines_must_be_requirements() -> None:
    with pytest.raises(InvalidRequest, match="is not a requirement"):
        clean_requirements(["numpy", "not a requirement!!"])
    with pytest.raises(InvalidRequest, match="at most"):
        clean_requirements(["x" * 2000])
