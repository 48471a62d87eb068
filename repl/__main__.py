"""`python -m repl`: the interactive shell (same as `bitcask-shell`)."""

from __future__ import annotations

import sys

from .shell import main

sys.exit(main())
