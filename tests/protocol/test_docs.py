"""The worked hex examples of docs/protocol.md: generated here, checked against the doc.

Every `printf '...'` in the doc must decode (with FrameDecoder) to the requests its
`# sends:` comment names, and every xxd dump under `# receives:` to the responses
named there. `python -m tests.protocol.test_docs` prints the examples, generated
with the real encoder, for pasting into the doc.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

from protocol import FrameDecoder, encode_request, encode_response

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

# (requests, responses) as [0, msgid, method, params] / [1, msgid, error, result]
EXAMPLES: list[tuple[list[list[Any]], list[list[Any]]]] = [
    ([[0, 1, "ping", []]], [[1, 1, None, "PONG"]]),
    (
        [[0, 2, "put", [b"k", b"hello"]], [0, 3, "get", [b"k"]]],
        [[1, 2, None, True], [1, 3, None, b"hello"]],
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
    """One example block as it appears in the doc (between ```sh fences)."""
    return "\n".join(
        [
            f"# sends: {_literal(requests)}",
            f"printf '{_printf(_wire(requests))}' | nc -q1 127.0.0.1 7379 | xxd",
            f"# receives: {_literal(responses)}",
            _xxd(reply),
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
        r"# sends: (?P<sends>.*)\nprintf '(?P<arg>[^']*)' \| nc[^\n]*\n"
        r"# receives: (?P<recv>.*)\n(?P<dump>(?:[0-9a-f]{8}: .*\n)+)"
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


if __name__ == "__main__":
    print("\n\n".join(rendered_examples()))
