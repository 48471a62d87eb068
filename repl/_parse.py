"""Tokenising command lines: the shell's own quoting, the same at the prompt and in a pipe.

Strategy: one scanner, `tokenize()`, serves three readers. Execution calls it strict
(an unbalanced quote or a bad escape is a `ParseError` naming the column); the lexer
and the completer call it lenient, because they see half-typed lines, and get every
token with its span plus an `error` string instead of an exception.

Invariants:
- Arguments are separated by runs of spaces or tabs.
- A double-quoted argument understands exactly the escapes
  `\\" \\\\ \\n \\r \\t \\xNN`; an unquoted argument is taken literally (a backslash
  is a backslash). These are the shell's rules, stricter than redis-cli's (which
  also reads single-quoted arguments): docs/shell.md says how they differ.
- A closing quote must be followed by a space or the end of the line, and a quote
  may not appear inside an unquoted argument.
- Token values are bytes: unquoted text is UTF-8 encoded with `surrogateescape`, so
  a line read from a pipe as bytes round-trips unchanged.
- `quote()` is the inverse of the scanner: `tokenize(quote(b))[0].value == b` for
  every byte string `b`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ParseError", "Token", "escape_bytes", "quote", "tokenize", "unescape"]

_SIMPLE_ESCAPES = {'"': 0x22, "\\": 0x5C, "n": 0x0A, "r": 0x0D, "t": 0x09}
_BLANKS = " \t"
_HEX = "0123456789abcdefABCDEF"


class ParseError(ValueError):
    """A line that cannot be split into arguments (unbalanced quote, bad escape).

    `column` is the 0-based offset in the line where the problem starts.
    """

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.column = column


# Not frozen, no eq/hash (nothing compares, hashes or assigns to a token): every
# `bitcask` start defines this class, and those methods cost 2.7M instructions at
# import (dataclasses exec()s each; callgrind, CPython 3.11)
@dataclass(slots=True, eq=False)
class Token:
    """One argument: its source text and span, its bytes, and any problem with it."""

    text: str
    start: int
    end: int
    value: bytes
    quoted: bool = False
    closed: bool = True  # False for a quoted token still missing its closing quote
    error: str | None = None

    @property
    def str_value(self) -> str:
        """The value as text (undecodable bytes kept as surrogates)."""
        return self.value.decode("utf-8", "surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def unescape(body: str) -> bytes:
    """Decode the inside of a double-quoted argument.

    Args:
        body: the text between the quotes.

    Returns:
        The bytes it stands for.

    Raises:
        ParseError: on an unknown escape or a short `\\xNN`.

    Example:
        >>> unescape(r"a\\x00\\n")
        b'a\\x00\\n'
    """
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            j = body.find("\\", i)
            j = len(body) if j < 0 else j
            out += _encode(body[i:j])
            i = j
            continue
        if i + 1 >= len(body):
            raise ParseError("a backslash at the end of a quoted argument", i)
        nxt = body[i + 1]
        if nxt in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[nxt])
            i += 2
        elif nxt == "x":
            digits = body[i + 2 : i + 4]
            if len(digits) != 2 or any(d not in _HEX for d in digits):
                raise ParseError(f"\\x needs two hex digits, got {digits!r}", i)
            out.append(int(digits, 16))
            i += 4
        else:
            raise ParseError(f'unknown escape \\{nxt} (use \\" \\\\ \\n \\r \\t \\xNN)', i)
    return bytes(out)


def tokenize(line: str, *, strict: bool = True) -> list[Token]:
    """Split a command line into arguments.

    Args:
        line: one line, without its newline.
        strict: raise on the first problem (for execution); when False, return
            every token and mark problems in `Token.error` (for the lexer and
            the completer, which see half-typed input).

    Returns:
        The tokens in order.

    Raises:
        ParseError: in strict mode, for an unbalanced quote, a bad escape, or text
            glued to a closing quote.

    Example:
        >>> [t.value for t in tokenize('put "a key" 1')]
        [b'put', b'a key', b'1']
    """
    tokens: list[Token] = []
    i, n = 0, len(line)
    while i < n:
        if line[i] in _BLANKS:
            i += 1
            continue
        start = i
        if line[i] != '"':
            while i < n and line[i] not in _BLANKS:
                i += 1
            text = line[start:i]
            error = None
            if '"' in text:
                error = 'a quote inside an argument (quote the whole argument: "a b")'
                if strict:
                    raise ParseError(error, start + text.index('"'))
            tokens.append(Token(text, start, i, _encode(text), error=error))
            continue
        tok = _quoted(line, start)
        if tok.error is not None and strict:
            raise ParseError(tok.error, tok.start)
        tokens.append(tok)
        i = tok.end
    return tokens


def _quoted(line: str, start: int) -> Token:
    """Scan a double-quoted token beginning at `start`."""
    i, n = start + 1, len(line)
    while i < n:
        if line[i] == "\\":
            i += 2
            continue
        if line[i] == '"':
            break
        i += 1
    if i >= n:
        body = line[start + 1 :]
        value, error = _lenient_unescape(body)
        return Token(line[start:], start, n, value, True, False, error or "unbalanced quotes")
    end = i + 1
    value, error = _lenient_unescape(line[start + 1 : i])
    if error is None and end < n and line[end] not in _BLANKS:
        error = "a closing quote must be followed by a space"
        while end < n and line[end] not in _BLANKS:
            end += 1
    return Token(line[start:end], start, end, value, True, True, error)


def _lenient_unescape(body: str) -> tuple[bytes, str | None]:
    try:
        return unescape(body), None
    except ParseError as exc:
        return _encode(body), str(exc)


def escape_bytes(value: bytes) -> str:
    """The body of a quoted argument (no surrounding quotes) that decodes to `value`.

    Printable UTF-8 text stays as it is; quotes, backslashes, control characters and
    bytes that are not UTF-8 become escapes.

    Example:
        >>> escape_bytes(b'say "hi"\\x00\\xff')
        'say \\\\"hi\\\\"\\\\x00\\\\xff'
    """
    text = value.decode("utf-8", "surrogateescape")
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F or (not ch.isprintable() and ch != " "):
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8"))
        else:
            out.append(ch)
    return "".join(out)


def quote(value: bytes) -> str:
    """An argument that tokenizes back to exactly `value`: bare when safe, else quoted.

    Example:
        >>> quote(b"user:1"), quote(b"a b"), quote(b"")
        ('user:1', '"a b"', '""')
    """
    body = escape_bytes(value)
    bare_ok = (
        value
        and body == value.decode("utf-8", "surrogateescape")
        and not any(ch in body for ch in ' \t"')
    )
    return body if bare_ok else f'"{body}"'
