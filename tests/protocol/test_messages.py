"""Message constructors validate; ErrorCode is the stable table."""

from __future__ import annotations

from typing import Any

import pytest

from protocol import (
    ErrorCode,
    ErrorInfo,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    Request,
    Response,
    message_from_obj,
)


def test_error_codes_are_the_contract_table() -> None:
    assert {c.name: c.value for c in ErrorCode} == {
        "PROTOCOL_ERROR": 100,
        "UNKNOWN_METHOD": 101,
        "INVALID_PARAMS": 102,
        "UNSUPPORTED_VERSION": 103,
        "AUTH_REQUIRED": 200,
        "AUTH_FAILED": 201,
        "KEY_TOO_LARGE": 300,
        "VALUE_TOO_LARGE": 301,
        "FRAME_TOO_LARGE": 302,
        "TOO_MANY_CONNECTIONS": 303,
        "BATCH_TOO_LARGE": 304,
        "READ_ONLY": 400,
        "IO_ERROR": 401,
        "CORRUPT_RECORD": 402,
        "MERGE_IN_PROGRESS": 403,
        "STORE_FULL": 404,
        "NOT_A_NUMBER": 410,
        "NO_SUCH_KEY": 411,
        "NO_SUCH_SNAPSHOT": 412,
        "INTERNAL": 500,
        "SHUTTING_DOWN": 501,
        "BUSY": 502,
    }


def test_error_hierarchy() -> None:
    assert issubclass(RemoteProtocolError, ProtocolError)
    assert issubclass(LocalProtocolError, ProtocolError)
    err = ProtocolError("nope", ErrorCode.INVALID_PARAMS)
    assert err.code is ErrorCode.INVALID_PARAMS and err.message == "nope"
    assert RemoteProtocolError("x").messages == []


@pytest.mark.parametrize(
    "args",
    [
        pytest.param((-1, "get", []), id="negative-msgid"),
        pytest.param((2**32, "get", []), id="big-msgid"),
        pytest.param((True, "get", []), id="bool-msgid"),
        pytest.param((1, b"get", []), id="bytes-method"),
        pytest.param((1, "get", b"k"), id="bytes-params"),
        pytest.param((1, "get", None), id="none-params"),
    ],
)
def test_request_validates(args: tuple[Any, ...]) -> None:
    with pytest.raises(LocalProtocolError):
        Request(*args)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param((-1, None, None), id="negative-msgid"),
        pytest.param((1, "oops", None), id="str-error"),
        pytest.param((1, [100, "X", "y"], None), id="list-error"),
    ],
)
def test_response_validates(args: tuple[Any, ...]) -> None:
    with pytest.raises(LocalProtocolError):
        Response(*args)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("100", "X", ""), id="str-code"),
        pytest.param((True, "X", ""), id="bool-code"),
        pytest.param((100, None, ""), id="none-name"),
        pytest.param((100, "X", 5), id="int-message"),
    ],
)
def test_error_info_validates(args: tuple[Any, ...]) -> None:
    with pytest.raises(LocalProtocolError):
        ErrorInfo(*args)


def test_messages_are_frozen() -> None:
    req = Request(1, "get", [b"k"])
    with pytest.raises(AttributeError):
        req.msgid = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(Request(1, "get", [b"k"]), id="request"),
        pytest.param(Response(2, None, True), id="response"),
        pytest.param(Response(3, ErrorInfo.from_code(ErrorCode.BUSY, "later"), None), id="error"),
    ],
)
def test_to_obj_and_back(message: Request | Response) -> None:
    assert message_from_obj(message.to_obj()) == message


def test_response_ok() -> None:
    assert Response(1, None, None).ok
    assert not Response(1, ErrorInfo.from_code(ErrorCode.INTERNAL), None).ok
