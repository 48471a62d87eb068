"""Redis glob patterns (KEYS, SCAN MATCH) with stringmatchlen's exact semantics, in O(n*m).

Strategy / invariants:
- The pattern is compiled once into tokens: STAR (a run of `*`), ANY (`?`), a
  literal byte (`\\x` escapes x; a trailing lone `\\` is literal), or a class
  `[...]` turned into the set of bytes it matches. The class is read exactly as
  Redis's util.c reads it: `^` negates, `\\x` is x, `a-z` is a range whose ends
  may come in either order and compare as *signed* chars (so `[a-\\xff]` is
  `\\xff` plus 0x00..`a`), `a-]` is a range too, and a missing `]` ends the class
  at the end of the pattern. Each class is read once into a 256-byte map, so
  compiling is linear in the pattern (KEYS with any pattern and no keys is cheap,
  as in Redis).
- Matching is the single-backtrack-point algorithm: on a mismatch only the most
  recent STAR takes one more byte. Redis's recursion reaches the same answer
  because its skipLongerMatches flag fails the whole match as soon as any STAR
  runs out of positions; so the cost is O(len(pattern) * len(string)), never
  exponential. Equivalently, each run of tokens between stars (a `_Segment`) is
  taken at its leftmost match and the last one must end the string, so the runs
  are matched at C speed: literals by bytes.find / startswith, runs with `?` or
  classes by a regex of one-byte items (no quantifier, nothing to backtrack),
  compiled in parts of at most 1,024 tokens so `re`'s cache stays small. (Token
  by token in Python, `*` + 30,000 `a` + `b` against a key of 60,000 `a` took
  minutes; Redis's C takes ~4 s, this ~1 ms.)
- Redis refuses to recurse past 1000 nested stars; equivalently, a match that
  reaches the 1001st STAR with more pattern after it fails here too.
- stringmatchlen("*", "") is false (the loop never runs); KEYS and SCAN special-
  case the lone `*` as "every key", so `compile_glob` does too.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["compile_glob", "stringmatch"]

_STAR = -1
_ANY = -2
_MAX_NESTING = 1000

Token = int | bytes
"""A literal byte (0..255), _STAR, _ANY, or a class: 256 bytes, 1 where a byte matches."""


def _signed(b: int) -> int:
    return b - 256 if b >= 128 else b


def _class(pat: bytes, start: int) -> tuple[bytes, int]:
    """Read Redis's `[` branch once: (a 256-byte map, 1 = the byte matches; index after it).

    One pass over the class whatever byte is tested (Redis re-reads the class per
    byte; asking it 256 times made a 50 KB pattern of classes cost ~4 s to compile).
    """
    n = len(pat)
    members = bytearray(256)
    i = start + 1
    negate = i < n and pat[i] == 0x5E  # '^'
    if negate:
        i += 1
    while True:
        left = n - i
        if left <= 0:  # no ']': the class ends with the pattern
            i -= 1
            break
        c = pat[i]
        if c == 0x5C and left >= 2:  # '\\x' is x
            i += 1
            members[pat[i]] = 1
        elif c == 0x5D:  # ']'
            break
        elif left >= 3 and pat[i + 1] == 0x2D:  # 'a-z', ends in either order, signed
            lo, hi = _signed(c), _signed(pat[i + 2])
            if lo > hi:
                lo, hi = hi, lo
            i += 2
            if lo < 0 <= hi:  # wraps: 0x80..0xff, then 0x00..hi
                members[lo + 256 :] = b"\x01" * -lo
                members[: hi + 1] = b"\x01" * (hi + 1)
            else:
                a, b = lo % 256, hi % 256
                members[a : b + 1] = b"\x01" * (b - a + 1)
        else:
            members[c] = 1
        i += 1
    if negate:
        members = members.translate(_FLIP)
    return bytes(members), i + 1


_FLIP = bytes.maketrans(b"\x00\x01", b"\x01\x00")


def _compile(pat: bytes) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(pat)
    while i < n:
        c = pat[i]
        if c == 0x2A:  # '*'
            while i < n and pat[i] == 0x2A:
                i += 1
            tokens.append(_STAR)
            continue
        if c == 0x3F:  # '?'
            tokens.append(_ANY)
            i += 1
        elif c == 0x5B:  # '['
            members, i = _class(pat, i)
            tokens.append(members)
        elif c == 0x5C and n - i >= 2:  # '\x'
            tokens.append(pat[i + 1])
            i += 2
        else:
            tokens.append(c)
            i += 1
    return tokens


def stringmatch(pattern: bytes, string: bytes) -> bool:
    """Redis's stringmatchlen(pattern, string, nocase=0).

    Args:
        pattern: a glob: `*` any run, `?` one byte, `[abc]`, `[^a]`, `[a-z]`, `\\x`.
        string: the key to test.

    Returns:
        Whether it matches, exactly as Redis decides (including `*` not matching
        the empty string; see `compile_glob` for KEYS's special case).

    Example:
        >>> stringmatch(b"user:[0-9]*", b"user:42"), stringmatch(b"h?llo", b"hllo")
        (True, False)
    """
    return _compile_matcher(pattern)(string)


class _Part:
    """Up to _PART_MAX one-byte tokens: bytes.find/startswith if all are literals,
    else a regex of fixed-width items (no quantifier: no backtracking inside it)."""

    __slots__ = ("literal", "regex")

    def __init__(self, tokens: list[Token]) -> None:
        self.literal: bytes | None = None
        self.regex: re.Pattern[bytes] | None = None
        if all(type(t) is int and t >= 0 for t in tokens):
            self.literal = bytes(tokens)  # type: ignore[arg-type]
        else:
            self.regex = re.compile(b"".join(map(_regex_item, tokens)), re.DOTALL)

    def match_at(self, s: bytes, at: int) -> bool:
        if self.literal is not None:
            return s.startswith(self.literal, at)
        assert self.regex is not None
        return self.regex.match(s, at) is not None

    def find(self, s: bytes, start: int) -> int:
        if self.literal is not None:
            return s.find(self.literal, start)
        assert self.regex is not None
        m = self.regex.search(s, start)
        return -1 if m is None else m.start()


_PART_MAX = 1024  # tokens per part: re's cache of compiled patterns stays small


class _Segment:
    """A run of one-byte tokens between stars, matched at C speed (bytes.find, re)
    in parts of at most _PART_MAX tokens; the width is the number of tokens."""

    __slots__ = ("parts", "width")

    def __init__(self, tokens: list[Token]) -> None:
        self.width = len(tokens)
        self.parts = [
            (i, _Part(tokens[i : i + _PART_MAX])) for i in range(0, len(tokens), _PART_MAX)
        ]

    def match_at(self, s: bytes, at: int) -> bool:
        """Whether the segment matches s at `at` (the caller checked the length)."""
        return all(part.match_at(s, at + i) for i, part in self.parts)

    def find(self, s: bytes, start: int) -> int:
        """The leftmost position >= start where the segment matches, or -1."""
        first = self.parts[0][1]
        last = len(s) - self.width
        while start <= last:
            at = first.find(s, start)
            if at < 0 or at > last:
                return -1
            if all(part.match_at(s, at + i) for i, part in self.parts[1:]):
                return at
            start = at + 1
        return -1


def _regex_item(tok: Token) -> bytes:
    if tok == _ANY:
        return b"."
    if type(tok) is int:
        return b"\\x%02x" % tok
    assert isinstance(tok, bytes)
    runs = [m.span() for m in re.finditer(b"\x01+", tok)]
    if not runs:
        return b"(?!)"  # a class no byte matches
    return b"[" + b"".join(b"\\x%02x-\\x%02x" % (a, b - 1) for a, b in runs) + b"]"


def _compile_matcher(pattern: bytes) -> Callable[[bytes], bool]:
    tokens = _compile(pattern)
    # tokens = seg0 STAR seg1 STAR ... STAR segK (seg0, segK may be empty)
    segments: list[_Segment] = []
    run: list[Token] = []
    for tok in tokens:
        if tok == _STAR:
            segments.append(_Segment(run))
            run = []
        else:
            run.append(tok)
    segments.append(_Segment(run))
    empty_pattern = not tokens

    def match(s: bytes) -> bool:
        return _match_segments(segments, empty_pattern, s)

    return match


def _match_segments(segments: list[_Segment], empty_pattern: bool, s: bytes) -> bool:
    """Redis's answer, by leftmost matches: a mismatch only ever moves the latest star
    (the Strategy's single backtrack point), so each segment between stars is taken
    at its leftmost match and the last one must end the string."""
    ns = len(s)
    if ns == 0:
        return empty_pattern
    first = segments[0]
    stars = len(segments) - 1
    if first.width > ns or not first.match_at(s, 0):
        return False
    if stars == 0:
        return first.width == ns
    pos = first.width
    for k in range(1, stars + 1):  # at star k, position pos
        seg = segments[k]
        if seg.width == 0:  # the pattern ends with this star
            return True
        if pos >= ns or k > _MAX_NESTING:
            return False
        if k == stars:  # the last segment ends the string
            at = ns - seg.width
            return at >= pos and seg.match_at(s, at)
        at = seg.find(s, pos)
        if at < 0:
            return False
        pos = at + seg.width
    raise AssertionError("unreachable: the last segment returns")


def compile_glob(pattern: bytes) -> Callable[[bytes], bool]:
    """A matcher for KEYS/SCAN MATCH: `stringmatch` compiled once, lone `*` matches all.

    Args:
        pattern: the glob as sent by the client.

    Returns:
        A function key -> bool.

    Example:
        >>> m = compile_glob(b"a[^b]c")
        >>> [m(k) for k in (b"abc", b"axc", b"ac")]
        [False, True, False]
    """
    if pattern == b"*":
        return lambda key: True
    return _compile_matcher(pattern)
