"""What the key-space commands need beyond the engine: SCAN's cursors, COPY's op.

Strategy / invariants:
- COPY is one engine op (`Copy`, a bitcask.Op decided by the writer at apply time,
  as Rename is): the value and expiry are read and written in the same group, so a
  write to the source racing it lands wholly before or after the copy, alone and
  inside EXEC.
- SCAN walks the keydir's sorted index (Bitcask.scan(after=...)): a page continues
  strictly after some byte string, and any string at or before the last key returned
  keeps Redis's guarantee (every key present from the start of the iteration to its
  end is returned at least once); a string nearer that key only returns fewer keys
  twice.
- A cursor is 52 bits (exact as a double: node-redis 4 reads it as a JavaScript
  Number and sends that back): the first 3 bytes of the page's last key (zero padded)
  in its top 24 bits, a 28-bit tag below, from a hash of the whole key (blake2b,
  the same in every process, never 0). The server remembers the latest 65,536
  cursors it handed out or was sent, holding at most 16 MiB of keys (server-wide,
  least recently used forgotten first; the cursors of before held up to 8,192 keys
  of up to 64 KiB: 512 MiB), each with its exact key: a remembered cursor continues
  right after it.
- A cursor the server does not remember (forgotten under load, sent after a
  restart, or sent to another server over the same store) continues after its
  3-byte prefix instead: the keys sharing that prefix that were returned already
  come again, none is skipped. It used to end the iteration (`0`, no keys): a scan
  whose cursor was pushed out by 4,096 others, or that outlived a restart, missed
  every key after it without a word. An iteration whose every cursor is forgotten
  before it is sent again (65,536 cursors or 16 MiB of keys handed out by others in
  between, each time) cannot get further than one page past its prefix.
- Two keys whose cursors would be equal (same prefix, same 28-bit tag) while both are
  remembered: the later one takes the next hash of a few, so a remembered cursor is
  never re-pointed at another key while it is held. Once forgotten, it may be: a
  client still holding it then continues after that other key (same 3-byte prefix,
  same 28-bit tag: about one key in 2**28 of those sharing the prefix), the one way
  left to miss keys.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

import bitcask

__all__ = ["CURSOR_BITS", "SCAN_CURSORS", "SCAN_CURSOR_BYTES", "Copy", "ScanCursors"]

SCAN_CURSORS = 65_536  # cursors remembered server-wide (least recently used forgotten first)
SCAN_CURSOR_BYTES = 16 << 20  # and the most bytes of keys they hold
CURSOR_BITS = 52  # cursors are 1 ..= 2**52 - 1: exact as a double
PREFIX_BYTES = 3  # of the last key, in the cursor's top bits
TAG_BITS = CURSOR_BITS - 8 * PREFIX_BYTES  # 28
_TAG_SPAN = (1 << TAG_BITS) - 1  # tags are 1 ..= 2**28 - 1: a cursor is never 0
_TRIES = 8  # hashes tried when a cursor is held for another key


def _tag(key: bytes, i: int) -> int:
    digest = blake2b(key, digest_size=8, salt=i.to_bytes(1, "big")).digest()
    return int.from_bytes(digest, "big") % _TAG_SPAN + 1


def prefix_of(cursor: int) -> bytes:
    """The byte string a cursor continues after when its key is forgotten: its prefix
    bytes without the zero padding (at or before every key that gave that prefix)."""
    head = (cursor >> TAG_BITS) & ((1 << (8 * PREFIX_BYTES)) - 1)
    return head.to_bytes(PREFIX_BYTES, "big").rstrip(b"\0")


class ScanCursors:
    """Cursor <-> the key a page ended at (server-wide, bounded, LRU).

    Example:
        >>> cursors = ScanCursors()
        >>> c = cursors.new(b"user:41")
        >>> cursors.after(c), ScanCursors().after(c)  # remembered; forgotten
        (b'user:41', b'use')
    """

    def __init__(self, size: int = SCAN_CURSORS, nbytes: int = SCAN_CURSOR_BYTES) -> None:
        self._size = size
        self._max_bytes = nbytes
        self._bytes = 0  # of the keys held
        self._keys: OrderedDict[int, bytes] = OrderedDict()

    def new(self, last: bytes) -> int:
        """The cursor continuing after `last` (the same one for the same key while
        it is remembered: a retried SCAN answers the same page under it)."""
        head = int.from_bytes(last[:PREFIX_BYTES].ljust(PREFIX_BYTES, b"\0"), "big")
        head <<= TAG_BITS
        keys = self._keys
        for i in range(_TRIES):
            cursor = head | _tag(last, i)
            held = keys.get(cursor, last)
            if held == last:
                break
        else:  # every try held for another key (about 2**-224): keep the earlier key,
            last = min(held, last)  # at or before both holders' keys: none skipped
        old = keys.get(cursor)
        self._bytes += len(last) - (0 if old is None else len(old))
        keys[cursor] = last
        keys.move_to_end(cursor)
        while len(keys) > self._size or (self._bytes > self._max_bytes and len(keys) > 1):
            self._bytes -= len(keys.popitem(last=False)[1])
        return cursor

    def after(self, cursor: int) -> bytes:
        """What a page sent with `cursor` continues strictly after."""
        last = self._keys.get(cursor)
        if last is None:
            return prefix_of(cursor)
        self._keys.move_to_end(cursor)
        return last


@dataclass(frozen=True)
class Copy(bitcask.Op):
    """Copy the value and expiry of `key` to `dst` (Redis's COPY); with `replace` over
    a present `dst`, else only if `dst` is absent. Result: whether it copied."""

    key: bytes
    dst: bytes
    replace: bool = False

    def keys(self) -> tuple[bytes, ...]:
        return (self.dst,)

    def apply(self, view: Any) -> tuple[object, list[Any]]:
        value, exp = view.get(self.key)
        if value is None or (not self.replace and view.get(self.dst)[0] is not None):
            return False, []
        return True, [(self.dst, value, exp)]
