"""Every byte a key can hold, through the HTTP adapter of a real server: percent-encoded
in the path, the same key the binary protocol sees, named exactly in JSON replies."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.parse

import pytest

from client import connect
from tests.server.test_http import call
from tests.serverproc import ServerProcess

JSON_ACCEPT = {"Accept": "application/json"}

KEYS = [
    pytest.param(b"\x00", id="nul"),
    pytest.param(b"\xff\xfe", id="not-utf8"),
    pytest.param("é".encode(), id="utf8"),
    pytest.param(b"\r\n", id="crlf"),
    pytest.param(b"\n", id="lf"),
    pytest.param(b"\t", id="tab"),
    pytest.param(b"\x1b[2J\x1b[31m", id="csi"),
    pytest.param(b"\x1b]0;pwned\x07", id="osc-title"),
    pytest.param(b"\x7f", id="del"),
    pytest.param("\u202eabc".encode(), id="bidi-override"),
    pytest.param(b"%2F", id="percent-2F"),
    pytest.param(b"a/b", id="slash"),
    pytest.param(b"?#", id="query-fragment"),
    pytest.param(b"a/../b", id="dotdot"),
    pytest.param(b"+ ", id="plus-space"),
    pytest.param(b"k" * 4000, id="long"),
]


def _binary_get(srv: ServerProcess, key: bytes) -> bytes | None:
    async def get() -> bytes | None:
        async with connect(srv.host, srv.port) as c:
            return await c.get(key)

    return asyncio.run(get())


def _named(data: bytes, field: str = "key") -> dict[str, str]:
    """How a JSON reply names `data`: as text, or base64 marked so when not UTF-8."""
    name = field or "value"
    try:
        return {name: data.decode()}
    except UnicodeDecodeError:
        return {
            name: base64.b64encode(data).decode(),
            f"{field}_encoding" if field else "encoding": "base64",
        }


@pytest.mark.parametrize("key", KEYS)
def test_a_percent_encoded_key_round_trips_exactly(shared: ServerProcess, key: bytes) -> None:
    path = "/kv/h:" + urllib.parse.quote(key, safe="")
    full = b"h:" + key
    assert call(shared, "PUT", path, b"v" + key)[0] == 204
    assert call(shared, "GET", path)[2] == b"v" + key
    assert _binary_get(shared, full) == b"v" + key  # the very key, not a re-encoding
    assert call(shared, "HEAD", path)[1]["content-length"] == str(len(key) + 1)
    assert call(shared, "POST", path + "?append", b"!")[2] == str(len(key) + 2).encode()
    status, _, body = call(shared, "GET", path, headers=JSON_ACCEPT)
    doc = json.loads(body)
    named, value = _named(full), _named(b"v" + key + b"!", "")
    assert (status, doc) == (200, {**named, **value, "found": True})
    assert body.isascii() and all(b >= 0x20 for b in body.rstrip(b"\n"))  # escaped JSON text
    assert call(shared, "DELETE", path)[0] == 204
    assert _binary_get(shared, full) is None
    status, _, body = call(shared, "DELETE", path, headers=JSON_ACCEPT)
    assert (status, json.loads(body)) == (404, {**named, "found": False})


def test_keys_that_differ_only_in_bytes_that_are_not_utf8_are_told_apart_in_json(
    shared: ServerProcess,
) -> None:
    """Both were named "k\\ufffd\\ufffd": the JSON key was decoded with replacement."""
    names = []
    for key in (b"kx\xff\xfe", b"kx\xfe\xff"):
        path = "/kv/" + urllib.parse.quote(key, safe="")
        assert call(shared, "PUT", path, b"v")[0] == 204
        doc = json.loads(call(shared, "GET", path, headers=JSON_ACCEPT)[2])
        assert doc["key_encoding"] == "base64" and base64.b64decode(doc["key"]) == key
        names.append(doc["key"])
    assert names[0] != names[1]


def test_an_encoded_slash_and_a_slash_are_one_key(shared: ServerProcess) -> None:
    """docs/http.md: the key is the percent-decoded rest of the path, `%2F` is a `/`."""
    assert call(shared, "PUT", "/kv/sl/a%2Fb", b"1")[0] == 204
    assert call(shared, "GET", "/kv/sl/a/b")[2] == b"1"
    assert _binary_get(shared, b"sl/a/b") == b"1"
    assert call(shared, "PUT", "/kv/sl/%252F", b"2")[0] == 204  # an encoded percent sign
    assert _binary_get(shared, b"sl/%2F") == b"2"
