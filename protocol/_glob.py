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
  exponential.
- Redis refuses to recurse past 1000 nested stars; equivalently, a match that
  reaches the 1001st STAR with more pattern after it fails here too.
- stringmatchlen("*", "") is false (the loop never runs); KEYS and SCAN special-
  case the lone `*` as "every key", so `compile_glob` does too.
"""

from __future__ import annotations

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


def _star_numbers(tokens: list[Token]) -> list[int]:
    out: list[int] = []
    count = 0
    for tok in tokens:
        if tok == _STAR:
            count += 1
        out.append(count)
    return out


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


def _compile_matcher(pattern: bytes) -> Callable[[bytes], bool]:
    tokens = _compile(pattern)
    numbers = _star_numbers(tokens)

    def match(s: bytes) -> bool:
        return _match_with_numbers(tokens, numbers, s)

    return match


def _match_with_numbers(tokens: list[Token], numbers: list[int], s: bytes) -> bool:
    nt, ns = len(tokens), len(s)
    if ns == 0:
        return nt == 0
    ti = si = 0
    star_ti = -1
    star_si = 0
    while si < ns:
        tok = tokens[ti] if ti < nt else None
        if tok == _STAR:
            if ti == nt - 1:
                return True
            if numbers[ti] > _MAX_NESTING:
                return False
            star_ti, star_si = ti, si
            ti += 1
            continue
        if tok is not None and (
            tok == _ANY or (tok == s[si] if isinstance(tok, int) else tok[s[si]])
        ):
            ti += 1
            si += 1
            continue
        if star_ti < 0:
            return False
        star_si += 1
        if star_si >= ns:
            return False
        si = star_si
        ti = star_ti + 1
    while ti < nt and tokens[ti] == _STAR:
        ti += 1
    return ti == nt


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
