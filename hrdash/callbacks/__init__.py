"""Callbacks, one module per concern.

:func:`register_all` imports every module of this package (sorted by name) and calls its
``register(app, settings)``. To customise the page, add a module here, e.g.
``hrdash/callbacks/alarms.py``::

    from dash import Input, Output

    from hrdash import ids


    def register(app, settings):
        @app.callback(Output("my-alarm", "children"), Input(ids.TICK, "n_intervals"))
        def ...

A module may also define ``layout(settings)`` returning a component (or a list of them): it is
placed below the table, in module order.

Keep the per-reading path clientside (``assets/hrdash.js``): a Python callback on
``hr-ws.message`` would cost one HTTP request per reading and viewer. Modules whose name starts
with ``_`` are skipped.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import dash

    from hrdash.settings import Settings


def modules() -> list[ModuleType]:
    """Every callback module of this package, imported, sorted by name."""
    names = sorted(
        info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")
    )
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


def register_all(app: dash.Dash, settings: Settings) -> list[str]:
    """Call ``register(app, settings)`` of every callback module; return the modules' names.

    Raises ``TypeError`` naming the module when one has no callable ``register``.
    """
    registered = []
    for module in modules():
        register = getattr(module, "register", None)
        if not callable(register):
            raise TypeError(f"{module.__name__} has no register(app, settings) function")
        register(app, settings)
        registered.append(module.__name__)
    return registered


def extra_layout(settings: Settings) -> list[Any]:
    """Components from the ``layout(settings)`` functions of the callback modules, in order."""
    extras: list[Any] = []
    for module in modules():
        build = getattr(module, "layout", None)
        if callable(build):
            part = build(settings)
            extras.extend(part if isinstance(part, (list, tuple)) else [part])
    return extras
