"""User bar handlers of a replay: import them by path, build them and register them."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from barkeeper.errors import ParameterError
from barkeeper.live.coordinator import BacktestStreamCoordinator
from barkeeper.live.session_data import SessionData


def handler_factory(path: str) -> Callable[[SessionData], Any]:
    """The factory named by an import path "package.module:factory".

    Raises
    ------
    ParameterError
        The module does not import, or it has no callable of that name.
    """
    module_name, _, name = path.partition(":")
    if not module_name or not name:
        raise ParameterError(f"handlers: {path!r} is not an import path like 'package.module:name'")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ParameterError(
            f"handlers: cannot import {module_name!r} of {path!r}: {error}"
        ) from None
    for part in name.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        raise ParameterError(f"handlers: {path!r} names no callable factory in {module_name!r}")
    return target


def attach_handlers(
    coordinator: BacktestStreamCoordinator, data: SessionData, paths: tuple[str, ...]
) -> list[Any]:
    """Build each path's handler from `data` and register it, with its session events if any.

    A handler is a callable `(symbol, ts, open, high, low, close, volume)`, sync or async,
    optionally with `on_session_start(session)` / `on_session_end(session)` methods.
    """
    handlers = []
    for path in paths:
        handler = handler_factory(path)(data)
        if not callable(handler):
            raise ParameterError(f"handlers: {path!r} returned {handler!r}, not a bar handler")
        # An instance with `async def __call__` is registered by its bound method, which the
        # coordinator recognises as a coroutine function and awaits.
        method = inspect.getattr_static(handler, "__call__", None)
        async_method = not inspect.isroutine(handler) and inspect.iscoroutinefunction(method)
        coordinator.register_handler(handler.__call__ if async_method else handler)
        on_start = getattr(handler, "on_session_start", None)
        on_end = getattr(handler, "on_session_end", None)
        if on_start is not None or on_end is not None:
            coordinator.add_session_listener(on_start, on_end)
        handlers.append(handler)
    return handlers
