"""Redis inline commands: one request line split into arguments as sdssplitargs does.

Strategy / invariants:
- The split is Redis 7's sdssplitargs (sds.c), which processInlineBuffer calls on
  each inline line: bare words, `"..."` with C escapes, `'...'` with only `\\'`,
  a quote that may open mid-word and must close before a blank or the end.
- A line without quotes (the common inline request: `PING`, `GET k`) is split by
  one regex; the loop handles quotes. A property test compares the two, and a
  port of the C function char by char is the oracle for both
  (tests/protocol/test_resp_reader.py).
- The work is linear in the line: each step is a regex run or one byte forward
  (`"a" ` 10,000 times, or 64 KiB of backslashes, are tested as such).
- Framing the line (where it ends, its 64 KiB limit, a NUL before the newline) is
  the reader's (protocol/_resp_reader.py); this module never sees a stream.
"""

from __future__ import annotations

import re

__all__ = ["split_inline"]

_ISSPACE = frozenset(b" \t\n\v\f\r")
# A line without quotes is only bare words: each starts at a non-blank (C isspace) and
# runs to space, tab, CR or LF (so \v and \f inside a word belong to it). One findall
# then splits it as the loop below would (a property test compares the two).
_BARE_WORD = re.compile(rb"[^ \t\n\v\f\r][^ \t\r\n]*")
_BARE_RUN = re.compile(rb"[^ \t\r\n\"']+")
_DQ_RUN = re.compile(rb'[^"\\]+')
_SQ_RUN = re.compile(rb"[^'\\]+")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_DQ_ESCAPES = {0x6E: 0x0A, 0x72: 0x0D, 0x74: 0x09, 0x62: 0x08, 0x61: 0x07}


def split_inline(line: bytes) -> list[bytes] | None:
    """Split one inline request line as Redis's sdssplitargs does.

    Bare words end at space, tab, CR or LF; blanks between words are any C isspace
    byte. `"..."` knows `\\n \\r \\t \\b \\a \\xHH` and takes any other escaped byte
    literally; `'...'` knows only `\\'`. A quote may open mid-word (`a"b c"` is
    `ab c`), a closing quote must be followed by a blank or the end. The line is a
    C string to sdssplitargs, so a NUL byte ends it.

    Args:
        line: the line without its `\\n` (a trailing `\\r` is a blank).

    Returns:
        The arguments (possibly []), or None for unbalanced quotes.

    Example:
        >>> split_inline(b'SET k "a\\\\x41" \\'it\\\\\\'s\\'')
        [b'SET', b'k', b'aA', b"it's"]
    """
    nul = line.find(b"\x00")
    if nul >= 0:
        line = line[:nul]
    if b'"' not in line and b"'" not in line:
        return _BARE_WORD.findall(line)
    n = len(line)
    args: list[bytes] = []
    i = 0
    while True:
        while i < n and line[i] in _ISSPACE:
            i += 1
        if i >= n:
            return args
        cur = bytearray()
        while True:  # one token
            if i >= n:
                break
            c = line[i]
            if c == 0x22:  # double quotes
                i += 1
                while True:
                    m = _DQ_RUN.match(line, i)
                    if m is not None:
                        cur += m.group()
                        i = m.end()
                    if i >= n:
                        return None
                    c = line[i]
                    if c == 0x5C:  # backslash
                        if (
                            i + 3 < n
                            and line[i + 1] == 0x78
                            and line[i + 2] in _HEX
                            and line[i + 3] in _HEX
                        ):
                            cur.append(int(line[i + 2 : i + 4], 16))
                            i += 4
                        elif i + 1 < n:
                            e = line[i + 1]
                            cur.append(_DQ_ESCAPES.get(e, e))
                            i += 2
                        else:
                            return None  # a lone backslash, then the end
                    else:  # closing quote
                        if i + 1 < n and line[i + 1] not in _ISSPACE:
                            return None
                        i += 1
                        break
                break
            if c == 0x27:  # single quotes
                i += 1
                while True:
                    m = _SQ_RUN.match(line, i)
                    if m is not None:
                        cur += m.group()
                        i = m.end()
                    if i >= n:
                        return None
                    if line[i] == 0x5C:
                        if i + 1 < n and line[i + 1] == 0x27:
                            cur.append(0x27)
                            i += 2
                        else:
                            cur.append(0x5C)
                            i += 1
                    else:
                        if i + 1 < n and line[i + 1] not in _ISSPACE:
                            return None
                        i += 1
                        break
                break
            if c in (0x20, 0x09, 0x0D, 0x0A):
                i += 1
                break
            m = _BARE_RUN.match(line, i)
            assert m is not None
            cur += m.group()
            i = m.end()
        args.append(bytes(cur))
