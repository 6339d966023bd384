"""Make Datasette's unit registry lazy: ~300 ms less on every cold start.

Datasette 0.65's `datasette/views/base.py` runs `ureg = pint.UnitRegistry()` at import time, which parses
pint's whole unit definition file. Only a table whose metadata declares `units` ever uses it (to show
`5 km` and to convert filters such as `?distance__gt=5km`). `lazy_unit_registry()` wraps the import of
Datasette: while it runs, `datasette.vendored.pint` is a stub whose `UnitRegistry` returns a
`LazyUnitRegistry`, a proxy that imports pint and builds the real registry the first time it is called or
an attribute is read. The stub is removed as soon as the import is done, so nothing else sees it.
Datasette 1.0 alphas have no pint; then this does nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class LazyUnitRegistry:
    """Stands in for `pint.UnitRegistry()`: builds it on first use, then forwards everything to it."""

    def __init__(self, factory: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._factory = factory
        self._args = args
        self._kwargs = kwargs
        self._registry: Any = None

    @property
    def built(self) -> bool:
        return self._registry is not None

    def real(self) -> Any:
        if self._registry is None:
            self._registry = self._factory(*self._args, **self._kwargs)
        return self._registry

    def __getattr__(self, name: str) -> Any:  # only called for names not found on the proxy itself
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.real(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.real()(*args, **kwargs)

    def __getitem__(self, item: Any) -> Any:
        return self.real()[item]


_PINT = "datasette.vendored.pint"


def _real_unit_registry(*args: Any, **kwargs: Any) -> Any:
    return importlib.import_module(_PINT).UnitRegistry(*args, **kwargs)


@contextmanager
def lazy_unit_registry() -> Iterator[None]:
    """Import Datasette inside this block to give it a `LazyUnitRegistry`.

    Even importing pint costs ~150 ms, so while Datasette is imported `datasette.vendored.pint`
    is a stub module whose only member is a `UnitRegistry` returning the proxy; afterwards the
    stub is removed, and the proxy imports the real pint the first time it is used.
    """
    if "datasette.views.base" in sys.modules:  # Datasette is already imported: too late
        yield
        return
    try:
        found = importlib.util.find_spec(_PINT)
    except ImportError:
        found = None
    if found is None or _PINT in sys.modules:  # Datasette 1.0 alphas have no pint
        yield
        return
    stub = types.ModuleType(_PINT, "stand-in for pint while Datasette is imported")
    stub.UnitRegistry = lambda *args, **kwargs: LazyUnitRegistry(_real_unit_registry, *args, **kwargs)  # type: ignore[attr-defined]
    vendored = sys.modules["datasette.vendored"]
    sys.modules[_PINT] = stub
    setattr(vendored, "pint", stub)  # noqa: B010
    try:
        yield
    finally:
        del sys.modules[_PINT]
        delattr(vendored, "pint")
