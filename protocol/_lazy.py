"""A package's public names imported on first use (PEP 562), for `protocol` and `client`.

Their `__init__` imported every submodule, so `from client import connect` also loaded
the server's side of `protocol` and the client's sharding; with `lazy_exports` a name
costs only the module it lives in.

Example:
    >>> getattr_ = lazy_exports("protocol", {"protocol.errors": "ErrorCode"})
    >>> getattr_("ErrorCode").NO_SUCH_KEY.name
    'NO_SUCH_KEY'
"""

from __future__ import annotations

import importlib
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


def lazy_exports(package: str, modules: Mapping[str, str]) -> Callable[[str], object]:
    """The module `__getattr__` of `package`: `modules` maps each submodule to the names
    (space-separated) it exports. A name is imported on first use and then kept in the
    package's namespace; any other name is an AttributeError, as Python's own."""
    where = {name: module for module, names in modules.items() for name in names.split()}

    def __getattr__(name: str) -> object:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
