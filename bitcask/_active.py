"""The active data file: a shared mapping of preallocated space, appended to by copying.

Strategy: a put's record is copied into a ``MAP_SHARED`` mapping of the file instead
of being handed to ``os.write``. The copy lands in the kernel's page cache, the same
place ``os.write`` puts it, so once ``append`` returns the record survives a SIGKILL
of the process (there is no user-space buffer to lose); surviving a power loss is
the sync policy's business, as before (``fdatasync`` of the descriptor writes back
the pages dirtied through the mapping too).

Invariants:
- Space is reserved before it is mapped (``_io.reserve``, i.e. ``posix_fallocate``),
  so a copy into the mapping never meets a full disk: no SIGBUS. A full disk shows
  as ENOSPC from ``reserve`` when the file is created (at open or rotation) or grows,
  and nothing is copied then.
- Bytes ``[size, capacity)`` are zero: never written, or zeroed again by ``cut``.
  ``append`` grows the reservation while the record would reach ``capacity``, so at
  least one zero byte always follows the last record of an unsealed file.
- The file header carries ``OPEN_FILE`` until ``seal`` truncates the file to
  ``size`` and rewrites the header without it (truncate first, and under a durable
  policy fdatasync in between: a crash or power cut in between leaves a flagged
  file with no tail, which is harmless). Recovery treats the zero
  tail of a flagged file as unwritten space (see ``_datafile.scan``) and truncates it
  at the next writer open; in any other file zero bytes are data.
- Mappings are never closed while the store is open: readers may hold the tuple
  that named one. A grown file gets a new, larger mapping; the old one stays valid
  for the prefix it covers and is unmapped when its last reference goes.

Crash story: SIGKILL between two appends leaves every appended record in the page
cache and zeros after them. SIGKILL inside an append is subtler than a short
``os.write``, which always leaves a prefix: memcpy does not store in address order
(glibc stores the first 32 bytes of a large copy last, and non-temporal copies go
page by page), so a torn copy can leave a hole with valid-looking bytes after it,
say a batch's COMMIT marker. So a buffer of several records is copied in two
steps, everything after the first record's 4-byte CRC and then that CRC (one
4-byte store). Stores retire in program order with respect to an interruption, so
a non-zero CRC at the start of such an append means every byte of it is there; a
zero CRC field on a record that fails its check means the append never completed,
and in a flagged file recovery treats everything from there as the torn tail
(truncated, and reported as such). A large buffer is written with ``pwrite`` into
the reserved space instead (the kernel copies in file order: a torn write leaves a
prefix, as a torn append always did). A buffer of one record (every put) is copied in
one step: whatever subset of it landed, it fails its CRC and no whole record lies
after it, so it is the torn tail as well. A crash during rotation (new file
created, old one not yet sealed) leaves two flagged files; recovery trims both.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
from collections.abc import Callable

from . import _io
from ._datafile import FILE_HEADER_SIZE, OPEN_FILE, encode_file_header

__all__ = ["ActiveFile"]


class _Records:
    """``_io.write``'s target for several records: ``append`` is ``append_records``."""

    __slots__ = ("append",)

    def __init__(self, append: Callable[[bytes], int]) -> None:
        self.append = append


# Reserve (and map) space in steps: the first FIRST_RESERVE bytes (all an idle store
# holds, so a nearly full disk still opens for writes), then steps that double up to
# RESERVE_STEP (posix_fallocate + mmap once per ~56,000 records of 150 bytes).
FIRST_RESERVE = 64 << 10
RESERVE_STEP = 8 << 20


# A buffer at least this large (a batch, a group commit) is written with pwrite into
# the reserved space instead of copied into the mapping: the copy would fault its
# pages in one by one. write_batch of 1,000 x 100 B, CPU per op from getrusage, two
# alternating runs: 1,372 ns copied, 1,187 ns written (main, os.write: 1,140-1,292).
_PWRITE_MIN = 16 << 10


class ActiveFile:
    """The one appendable data file of a store, written through a shared mapping."""

    __slots__ = ("capacity", "fd", "file_id", "limit", "mm", "path", "records", "size")

    def __init__(self, path: str, file_id: int, fd: int, limit: int) -> None:
        self.path = path
        self.file_id = file_id
        self.fd = fd
        self.limit = limit  # the file's target size (max_file_size): reserve up to it
        self.size = FILE_HEADER_SIZE  # bytes written: the header and the records
        self.capacity = 0  # bytes reserved and mapped
        self.mm: mmap.mmap | None = None
        # The write target (``_io.write``) for a buffer of several records.
        self.records = _Records(self.append_records)

    @classmethod
    def create(cls, path: str, file_id: int, limit: int, durable: bool) -> ActiveFile:
        """Create the file at ``path``, write its header, reserve and map its space.

        ``durable``: fsync the new file before returning (sync policies other than
        "never"). On failure nothing is left behind (a retry creates it again).

        Raises:
            OSError: the file exists, or the disk is full (ENOSPC), or out of
                descriptors (EMFILE / ENFILE).
        """
        # An interrupt (Ctrl-C, a signal handler's exception) anywhere in here removes
        # the file too: left behind, it made every later rotation fail (EEXIST).
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError:
            raise
        except BaseException:  # right after the open: the file is ours, its descriptor lost
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        active = None
        try:
            active = cls(path, file_id, fd, limit)
            _io.write(fd, encode_file_header(file_id, OPEN_FILE))
            active._grow(FILE_HEADER_SIZE)
            if durable:
                _io.fsync(fd)
        except BaseException:
            if active is None:
                os.close(fd)
                os.unlink(path)
            else:
                active.discard()
            raise
        return active

    def append(self, data: bytes) -> int:
        """Copy ``data``, exactly one record, after the last; return its offset.

        One copy (see "Crash story"): a buffer of several records goes through
        ``records.append`` instead.

        Raises:
            OSError: ENOSPC (or EMFILE for the larger mapping) when the file must
                grow and cannot: nothing was copied.
        """
        off = self.size
        end = off + len(data)
        if end >= self.capacity:
            self._grow(end)
        self.mm[off:end] = data  # type: ignore[index]
        self.size = end
        return off

    def append_records(self, data: bytes) -> int:
        """Copy ``data``, any number of whole records, after the last; return its offset.

        Everything after the first record's CRC first, then that CRC (see "Crash
        story"); a large buffer is written with pwrite instead (_PWRITE_MIN).
        ``records.append`` is this method, for ``_io.write``.

        Raises:
            OSError: as append().
        """
        off = self.size
        end = off + len(data)
        if end >= self.capacity:
            self._grow(end)
        if end - off >= _PWRITE_MIN:
            # The kernel copies in file order: a torn write leaves a prefix, as an
            # append always did, so no CRC-last step is needed.
            try:
                n = os.pwrite(self.fd, data, off)
                while n < end - off:
                    n += os.pwrite(self.fd, memoryview(data)[n:], off + n)
            except BaseException:
                # A failed (or interrupted) write may have stored whole records: zero
                # them again, or recovery would apply a write its caller was told
                # failed (cut() only knows the bytes counted in size).
                if self.mm is not None:
                    self.mm[off:end] = bytes(end - off)
                raise
            self.size = end
            return off
        mm = self.mm
        assert mm is not None
        body = off + 4
        try:
            if end > body:
                mm[body:end] = memoryview(data)[4:]  # no copy of data
            mm[off : min(body, end)] = data[:4]
        except BaseException:  # an interrupt between the two copies: leave no body behind
            mm[off:end] = bytes(end - off)
            raise
        self.size = end
        return off

    def cut(self, size: int) -> None:
        """Forget everything after ``size`` (a failed write): zero it again."""
        mm = self.mm
        if mm is not None and size < self.size:
            mm[size : self.size] = bytes(self.size - size)
        self.size = min(self.size, size)

    def sync(self) -> None:
        """Make every appended record durable (fdatasync also writes mapped pages).

        Raises:
            OSError: as fdatasync.
        """
        _io.fsync(self.fd)

    def seal(self, durable: bool) -> int:
        """Truncate the file to its records, clear ``OPEN_FILE``, close; return the size.

        ``durable``: fdatasync the truncation before the header says the file is
        sealed. Without it a power cut could keep the new header and lose the
        truncation (the kernel writes the header's page and commits the size change
        in either order): a sealed file ending in zeros, which reads as damage.

        A failure (EIO) leaves the file flagged with its zero tail, which the next
        open trims: sealing never loses a record.
        """
        size = self.size
        self.mm = None
        try:
            os.ftruncate(self.fd, size)
            if durable:
                _io.fsync(self.fd)
            # pwrite, not the mapping: the same page, and the order shows in strace
            os.pwrite(self.fd, encode_file_header(self.file_id), 0)
        except OSError:
            pass
        finally:  # an interrupt (Ctrl-C) in the truncate must not keep the descriptor
            self.close()
        return size

    def close(self) -> None:
        """Close the descriptor (the mapping goes with its last reference). Idempotent."""
        self.mm = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        """Close and delete the file (creation failed part way)."""
        self.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _grow(self, end: int) -> None:
        # Reserve, then map, enough for bytes [0, end] and then some: up to the
        # file's limit in growing steps, past it only for a record that is larger
        # than what remains (the writer rotates before any other).
        step = min(max(self.capacity, FIRST_RESERVE), RESERVE_STEP)
        cap = max(end + 1, min(self.capacity + step, self.limit))
        try:
            _io.reserve(self.fd, self.capacity, cap - self.capacity)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or cap == end + 1:
                raise
            # A nearly full disk: the step does not fit, the bytes asked for may. Without
            # this a 4 MiB volume refused writes with 1.9 MiB free (a 2 MiB step), and
            # the disk probe, which needs far less, then flapped writes on and off.
            cap = end + 1
            _io.reserve(self.fd, self.capacity, cap - self.capacity)
        # Pages fault in one by one as copies reach them. Not taken: populating a
        # step at once (madvise MADV_POPULATE_WRITE) took 15-20% off the CPU of a
        # 4 KiB put (6.3-7.3 us against 7.8-9.3, four alternating runs) and nothing
        # measurable off a 100 B one, but dirties the whole reserved step, whose
        # zeros are then written to disk too (by the next fsync, or by writeback).
        self.mm = mmap.mmap(self.fd, cap, access=mmap.ACCESS_WRITE)
        self.capacity = cap
