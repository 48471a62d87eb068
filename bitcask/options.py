"""Engine configuration: one frozen dataclass, defaults in one place, validated once.

Every field has a comment saying what it controls and why the default is what it
is; ``docs/format.md`` repeats the limits with their defence.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .errors import InvalidOptionsError

__all__ = ["SYNC_POLICIES", "Options"]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

SYNC_POLICIES = ("always", "interval", "never")

# Hard ceilings imposed by the packed keydir entry (see _keydir.py: offsets are 36
# bits, record sizes 32 bits) and by the hint file, which stores offset << 32 | size
# in a u64 (docs/format.md): every record must start below 4 GiB. A write never
# starts past max_file_size (the active file rotates first) and is at most 4 GiB
# (_publish.py's batch cap), so this ceiling keeps every offset below 2**32. It was
# 16 GiB: a file that grew past 4 GiB could get no hint (OverflowError at its seal,
# in a merge's outputs, in backup).
MAX_FILE_SIZE_LIMIT = 4 * GiB
MAX_KEY_SIZE_LIMIT = 1 * MiB
MAX_VALUE_SIZE_LIMIT = 2 * GiB - 1


@dataclass(frozen=True, slots=True)
class Options:
    """How a store behaves; pass to ``bitcask.open(path, options=...)`` or as keywords.

    Example:
        >>> Options(sync="never", max_file_size=64 * 1024 * 1024).sync
        'never'

    Raises:
        InvalidOptionsError: a field is of the wrong type or out of range.
    """

    # Rotate the active data file once it would grow past this many bytes. A batch
    # is never split, so one file may overflow by at most one batch.
    max_file_size: int = 128 * MiB
    # Longest key accepted (KeyTooLargeError beyond). Keys live in memory, once each.
    max_key_size: int = 64 * KiB
    # Largest value accepted (ValueTooLargeError beyond).
    max_value_size: int = 64 * MiB
    # "always": fdatasync before a write returns; "interval": a background syncer
    # every sync_interval_ms; "never": the OS decides. Every policy survives SIGKILL.
    sync: str = "always"
    # Period of the background syncer under sync="interval".
    sync_interval_ms: int = 1000
    # Auto-merge when dead_bytes / disk_bytes reaches this ratio (0 disables),
    # checked after each rotation ...
    merge_trigger: float = 0.5
    # ... and at least this many bytes are dead (so small stores never churn).
    merge_min_dead_bytes: int = 64 * MiB
    # Write hint files for sealed files and merge outputs, and use them at open.
    hint_files: bool = True
    # Most keys the keydir may hold (0: no limit). Past it a write of a new key is
    # refused (StoreFullError); reads, overwrites and deletes go on. Expired keys
    # count until a merge drops them. Bounds memory: about 130 bytes a key.
    max_keys: int = 0

    def __post_init__(self) -> None:
        _check_int("max_file_size", self.max_file_size, 64, MAX_FILE_SIZE_LIMIT)
        _check_int("max_key_size", self.max_key_size, 1, MAX_KEY_SIZE_LIMIT)
        _check_int("max_value_size", self.max_value_size, 0, MAX_VALUE_SIZE_LIMIT)
        if self.sync not in SYNC_POLICIES:
            raise InvalidOptionsError(f"sync must be one of {SYNC_POLICIES}, not {self.sync!r}")
        _check_int("sync_interval_ms", self.sync_interval_ms, 1, 3_600_000)
        trigger = self.merge_trigger
        if isinstance(trigger, bool) or not isinstance(trigger, int | float):
            raise InvalidOptionsError(f"merge_trigger must be a number, not {trigger!r}")
        if not 0.0 <= trigger <= 1.0:
            raise InvalidOptionsError(f"merge_trigger must be within [0, 1], not {trigger}")
        _check_int("merge_min_dead_bytes", self.merge_min_dead_bytes, 0, 1 << 62)
        _check_int("max_keys", self.max_keys, 0, 1 << 62)
        if not isinstance(self.hint_files, bool):
            raise InvalidOptionsError(f"hint_files must be a bool, not {self.hint_files!r}")

    @classmethod
    def from_kwargs(cls, base: Options | None, overrides: dict[str, Any]) -> Options:
        """Return ``base`` (or the defaults) with ``overrides`` applied and validated.

        Raises:
            InvalidOptionsError: an unknown field name or a bad value.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise InvalidOptionsError(f"unknown option(s): {', '.join(unknown)}")
        values = {n: getattr(base, n) for n in names} if base is not None else {}
        values.update(overrides)
        return cls(**values)


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOptionsError(f"{name} must be an int, not {value!r}")
    if not low <= value <= high:
        raise InvalidOptionsError(f"{name} must be within [{low}, {high}], not {value}")
