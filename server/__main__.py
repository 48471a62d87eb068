"""`python -m server`: the same as the bitcask-server console script."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
