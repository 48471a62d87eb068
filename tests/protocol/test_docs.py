"""The worked examples of docs/protocol.md: generated here, checked against the doc.

Each binary example is a sentence `Sends `[...]`; receives `[...]`.` (Python
notation) followed by a ```console block: `$ printf '...' | nc -N 127.0.0.1 7379 |
xxd` and the dump it prints. Every printf argument must decode (with FrameDecoder)
to the requests the sentence names, and every dump to the responses. (The shared
tests/test_docs.py runs the same blocks against a real server.)
`python -m tests.protocol.test_docs` prints the examples, generated with the real
encoder, for pasting into the doc. The 20-line Python client of the doc is run
against a real server here too.
"""

from __future__ import annotations

import ast
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from protocol import FrameDecoder, encode_request, encode_response
from tests.serverproc import ServerProcess

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

# (requests, responses) as [0, msgid, method, params] / [1, msgid, error, result]
EXAMPLES: list[tuple[list[list[Any]], list[list[Any]]]] = [
    ([[0, 1, "ping", []]], [[1, 1, None, "PONG"]]),
    (
        [[0, 2, "put", [b"k", b"hello"]], [0, 3, "get", [b"k"]]],
        [[1, 2, None, True], [1, 3, None, b"hello"]],
    ),
    (
        [[0, 4, "incr", [b"hits"]], [0, 5, "incr", [b"hits", 10]]],
        [[1, 4, None, 1], [1, 5, None, 11]],
    ),
    (
        [
            [0, 6, "set", [b"lock", b"me", {"nx": True}]],
            [0, 7, "set", [b"lock", b"you", {"nx": True, "get": True}]],
        ],
        [[1, 6, None, True], [1, 7, None, b"me"]],
    ),
    (
        [[0, 8, "incr", [b"lock"]]],
        [[1, 8, [410, "NOT_A_NUMBER", "value is not an integer or out of range"], None]],
    ),
    (
        [
            [0, 9, "watch", [[b"hits"]]],
            [0, 10, "commit", [[["incr", b"hits"], ["append", b"lock", b"!"]], {"watch": 1}]],
        ],
        [[1, 9, None, 1], [1, 10, None, [12, 3]]],
    ),
]


def _wire(messages: list[list[Any]]) -> bytes:
    out = b""
    for m in messages:
        if m[0] == 0:
            out += encode_request(m[1], m[2], m[3])
        else:
            out += encode_response(m[1], m[3], None)
    return out


def _printf(data: bytes) -> str:
    keep = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    return "".join(chr(b) if b in keep else f"\\x{b:02x}" for b in data)


def _xxd(data: bytes) -> str:
    lines = []
    for off in range(0, len(data), 16):
        chunk = data[off : off + 16]
        groups = " ".join(chunk[i : i + 2].hex() for i in range(0, len(chunk), 2))
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{off:08x}: {groups:<39}  {text}")
    return "\n".join(lines)


def _literal(messages: list[list[Any]]) -> str:
    return " ".join(repr(m) for m in messages)


def render(requests: list[list[Any]], responses: list[list[Any]], reply: bytes) -> str:
    """One example as it appears in the doc: the sentence and the console block."""
    return "\n".join(
        [
            f"Sends `{_literal(requests)}`; receives `{_literal(responses)}`.",
            "",
            "```console",
            f"$ printf '{_printf(_wire(requests))}' | nc -N 127.0.0.1 7379 | xxd",
            _xxd(reply),
            "```",
        ]
    )


def _reply_bytes(responses: list[list[Any]]) -> bytes:
    from protocol import ErrorInfo

    out = b""
    for r in responses:
        err = None if r[2] is None else ErrorInfo(*r[2])
        out += encode_response(r[1], r[3], err)
    return out


def rendered_examples() -> list[str]:
    return [render(req, resp, _reply_bytes(resp)) for req, resp in EXAMPLES]


def _as_objs(messages: list[Any]) -> list[list[Any]]:
    out = []
    for m in messages:
        obj = m.to_obj()
        out.append(obj)
    return out


def _parse_printf(arg: str) -> bytes:
    return re.sub(
        r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), arg.replace("%%", "%")
    ).encode("latin-1")


def _parse_xxd(lines: list[str]) -> bytes:
    data = b""
    for line in lines:
        hexpart = line.split(": ", 1)[1][:39]
        data += bytes.fromhex(hexpart.replace(" ", ""))
    return data


def _doc_blocks() -> list[tuple[str, str, str, list[str]]]:
    """(sends, printf argument, receives, xxd lines) for each example in the doc."""
    text = DOC.read_text(encoding="utf-8")
    found = []
    pattern = re.compile(
        r"Sends `(?P<sends>[^`]*)`; receives `(?P<recv>[^`]*)`\.\n\n```console\n"
        r"\$ printf '(?P<arg>[^']*)' \| nc[^\n]*\n(?P<dump>(?:[0-9a-f]{8}: .*\n)+)```"
    )
    for m in pattern.finditer(text):
        found.append((m["sends"], m["arg"], m["recv"], m["dump"].splitlines()))
    return found


def _literals(text: str) -> list[Any]:
    return list(ast.literal_eval(f"({text},)".replace("] [", "], [")))


def test_doc_has_every_generated_example() -> None:
    text = DOC.read_text(encoding="utf-8")
    for block in rendered_examples():
        assert block in text, f"docs/protocol.md lacks (regenerate it):\n{block}"


def test_every_hex_example_in_the_doc_decodes_to_what_the_text_says() -> None:
    blocks = _doc_blocks()
    assert len(blocks) >= len(EXAMPLES)
    for sends, arg, receives, dump in blocks:
        requests = FrameDecoder().feed(_parse_printf(arg))
        assert _as_objs(requests) == _literals(sends)
        responses = FrameDecoder().feed(_parse_xxd(dump))
        assert _as_objs(responses) == _literals(receives)


@pytest.mark.parametrize("data", [b"\x00\x01ping\xff", bytes(range(256))])
def test_printf_and_xxd_helpers_invert(data: bytes) -> None:
    assert _parse_printf(_printf(data)) == data
    assert _parse_xxd(_xxd(data).splitlines()) == data


def test_the_socket_and_msgpack_client_runs(server: ServerProcess, tmp_path: Path) -> None:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"only `socket` and `msgpack`:\n\n```python\n(.*?)```", text, re.S)
    assert match is not None
    script = tmp_path / "client20.py"
    script.write_text(match.group(1).replace("7379", str(server.port)), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["bitcask", "True", "b'hello'"]


def test_the_sans_io_snippet_runs_with_its_commented_steps(server: ServerProcess) -> None:
    """The `protocol/` block, then the two steps its comments describe, on a real socket."""
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"you own the socket\):\n\n```python\n(.*?)```", text, re.S)
    assert match is not None
    namespace: dict[str, Any] = {}
    exec(match.group(1), namespace)
    decoder, wire = namespace["decoder"], namespace["wire"]
    responses: list[Any] = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(wire)
        while not responses:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection"
            responses.extend(decoder.feed(chunk))
    (response,) = responses
    assert (response.msgid, response.error, response.result) == (1, None, None)


if __name__ == "__main__":
    print("\n\n".join(rendered_examples()))
