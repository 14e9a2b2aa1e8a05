"""GX Data Docs page views that share one compiled-template cache per process.

GX views compile their Jinja templates afresh for every Data Docs build (a new Environment per
view), ~0.35 s a build; these views share one in-memory bytecode cache instead.
"""

from __future__ import annotations

import functools
from typing import Any

# GX views compile their Jinja templates afresh for every Data Docs build (a new Environment per
# view), ~0.35 s a build. These views share one in-memory bytecode cache per process instead;
# its keys include each template's source checksum. GX instantiates views from module and class
# names, so the module-level `__getattr__` below defines them on first use (GX imports slowly).
_CACHED_VIEWS = {
    "CachedPageView": "DefaultJinjaPageView",
    "CachedIndexPageView": "DefaultJinjaIndexPageView",
}


def __getattr__(name: str) -> type:
    if name in _CACHED_VIEWS:
        return _cached_view(_CACHED_VIEWS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _template_bytecode() -> Any:
    from jinja2 import BytecodeCache

    class MemoryBytecodeCache(BytecodeCache):
        def __init__(self) -> None:
            self.codes: dict[str, bytes] = {}

        def load_bytecode(self, bucket: Any) -> None:
            code = self.codes.get(bucket.key)
            if code is not None:
                bucket.bytecode_from_string(code)

        def dump_bytecode(self, bucket: Any) -> None:
            self.codes[bucket.key] = bucket.bytecode_to_string()

    return MemoryBytecodeCache()


@functools.cache
def _cached_view(base_name: str) -> type:
    from great_expectations.render import view

    base = getattr(view, base_name)

    def __init__(
        self: Any,
        custom_styles_directory: str | None = None,
        custom_views_directory: str | None = None,
    ) -> None:
        base.__init__(self, custom_styles_directory, custom_views_directory)
        self.env.bytecode_cache = _template_bytecode()

    return type(f"Cached{base_name}", (base,), {"__init__": __init__})


def view_config(name: str) -> dict[str, str]:
    """A GX renderer config naming one of this module's cached views."""
    return {"module_name": __name__, "class_name": name}
