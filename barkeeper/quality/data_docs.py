"""The end-of-run GX checkpoint and its Data Docs, which must render styled without internet.

One GX run per run and session validates the session's 1m bars, derived bars and metrics as
in-memory batches; one Data Docs build then renders only that run's pages plus the index, into a
persistent folder, through a docs context cached per folder for the life of the process.
Stored validation results (and their pages) are kept to the last `keep_results`, so the index,
which reads every stored result, costs the same however many runs came before.

GX's page templates load Bootstrap, jQuery, Font Awesome, ... from public CDNs. After each build
the pages are rewritten (`offline_assets`) to copies of those files taken from Python packages
installed with barkeeper (`static/vendor/` in the Data Docs folder), so the docs work on an
offline desk.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from barkeeper.core.vocabulary import LEGEND, threshold_legend
from barkeeper.quality.frames import prepare_session_quality
from barkeeper.quality.offline_assets import add_legend, copy_vendor_assets, localise_pages
from barkeeper.quality.suites import (
    SUITE_NAMES,
    load_suite_spec,
    required_columns,
    suite_parameters,
)
from barkeeper.quality.validation import (
    SuiteResult,
    add_suite,
    successes_in_suite_order,
    summarise,
)

log = logging.getLogger(__name__)

SITE_NAME = "barkeeper"
RESULTS_SUBDIR = ".validations"
DEFAULT_KEEP_RESULTS = 300
FINAL_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 10}


@dataclass
class RunReport:
    """What the end-of-run checkpoint produced."""

    page: Path
    index: Path
    results: list[SuiteResult] = field(default_factory=list)
    pages: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


# ---------------------------------------------------------------- page views

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


def _view(name: str) -> dict[str, str]:
    return {"module_name": __name__, "class_name": name}


# ---------------------------------------------------------------- the checkpoint


def docs_context(data_docs_dir: Path, keep_results: int = DEFAULT_KEEP_RESULTS) -> Any:
    """A GX context whose results store and Data Docs site live under `data_docs_dir`."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    defaults = InMemoryStoreBackendDefaults()
    results_store = defaults.validation_results_store_name
    defaults.stores[results_store] = {
        "class_name": "ValidationResultsStore",
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(Path(data_docs_dir).resolve() / RESULTS_SUBDIR),
        },
    }
    config = DataContextConfig(
        store_backend_defaults=defaults,
        data_docs_sites={
            SITE_NAME: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "site_section_builders": {
                    "expectations": {"view": _view("CachedPageView")},
                    "validations": {"view": _view("CachedPageView")},
                },
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(Path(data_docs_dir).resolve()),
                },
                "site_index_builder": {
                    "class_name": "DefaultSiteIndexBuilder",
                    "validation_results_limit": keep_results,
                    "view": _view("CachedIndexPageView"),
                },
            }
        },
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        analytics_enabled=False,
    )
    return gx.get_context(mode="ephemeral", project_config=config)


@dataclass
class DocsSite:
    """A cached docs context with one dataframe asset and validation definition per suite."""

    context: Any
    definitions: dict[str, Any]
    lock: threading.Lock


_SITES: dict[tuple[Path, int], DocsSite] = {}
_FOLDER_LOCKS: dict[Path, threading.Lock] = {}
_SITES_LOCK = threading.Lock()


def docs_site(data_docs_dir: Path, keep_results: int = DEFAULT_KEEP_RESULTS) -> DocsSite:
    """The process's docs context for `data_docs_dir`, created (with suites) on first use.

    A context costs ~0.2 s to create and fill, so one lives per folder and `keep_results` for
    the life of the process. Its `lock`, one per folder, serialises the runs that write there.
    """
    import great_expectations as gx

    folder = Path(data_docs_dir).resolve()
    with _SITES_LOCK:
        site = _SITES.get((folder, keep_results))
        if site is not None:
            return site
        context = docs_context(folder, keep_results)
        source = context.data_sources.add_pandas("barkeeper_final")
        definitions = {}
        for name in SUITE_NAMES:
            batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
            suite = add_suite(context, load_suite_spec(name))
            definitions[name] = context.validation_definitions.add(
                gx.ValidationDefinition(name=name, data=batch, suite=suite)
            )
        lock = _FOLDER_LOCKS.setdefault(folder, threading.Lock())
        site = _SITES[(folder, keep_results)] = DocsSite(context, definitions, lock)
        return site


def run_final_checkpoint(
    run_id: str,
    session_label: str,
    frames: Mapping[str, pd.DataFrame],
    data_docs_dir: Path,
    *,
    parameters: Mapping[str, float] | None = None,
    keep_results: int = DEFAULT_KEEP_RESULTS,
    session_quality_severity: str = "warning",
) -> RunReport:
    """Validate a session's prepared frames in one GX run, then build its Data Docs once.

    Each suite's frame is validated in memory as its own dataframe batch (a checkpoint would
    hand one set of batch parameters to every suite), all under one run identifier; then one
    Data Docs build renders the run's pages and the index (GX's UpdateDataDocsAction would
    rebuild the index, which reads every stored result, once per suite).

    Parameters
    ----------
    run_id, session_label
        Name the GX run (`<run_id>__<session_label>`) and so the pages' folder.
    frames
        Prepared frames by suite name (`bars_1m` from `prepare_bars_1m`, `bars_derived` from
        `prepare_derived`, `session_quality` from `prepare_session_quality`); empty or absent
        suites are skipped.
    data_docs_dir
        Persistent Data Docs folder (Settings.reports_dir / "data_docs").
    parameters
        Overrides of the suites' `$PARAMETER` defaults.
    keep_results
        Stored validation results kept (oldest pruned with their pages); bounds the index cost.
    session_quality_severity
        As in `Validator`: the `session_quality` rules are warnings unless told otherwise.
    """
    from great_expectations.core.run_identifier import RunIdentifier

    started = time.perf_counter()
    data_docs_dir = Path(data_docs_dir).resolve()
    data_docs_dir.mkdir(parents=True, exist_ok=True)
    frames = dict(frames)
    if "session_quality" in frames:
        frames["session_quality"] = prepare_session_quality(frames["session_quality"])
    names = [n for n in SUITE_NAMES if n in frames and not frames[n].empty]
    if not names:
        raise ValueError("run_final_checkpoint needs at least one non-empty frame")
    specs = {n: load_suite_spec(n) for n in names}
    for n in names:
        missing = required_columns(specs[n]) - set(frames[n].columns)
        if missing:
            raise ValueError(f"{n}: frame lacks {sorted(missing)}; prepare it first")
    params: dict[str, float] = {}
    for n in names:
        params.update(suite_parameters(specs[n], parameters))
    site = docs_site(data_docs_dir, keep_results)
    with site.lock:
        run = RunIdentifier(run_name=f"{run_id}__{session_label}", run_time=datetime.now(UTC))
        outcome = {}
        try:
            for n in names:
                outcome[n] = site.definitions[n].run(
                    batch_parameters={"dataframe": frames[n]},
                    expectation_parameters=params,
                    result_format=FINAL_RESULT_FORMAT,
                    run_id=run,
                )
        finally:
            _release_batches(site)
        keys = {n: _result_key(n, run, result.batch_id) for n, result in outcome.items()}
        built = [(key, key.expectation_suite_identifier) for key in keys.values()]
        site.context.build_data_docs(
            site_names=[SITE_NAME], resource_identifiers=[i for pair in built for i in pair]
        )
        pages = {n: _page_path(site.context, key) for n, key in keys.items()}
        prune_results(site.context, data_docs_dir, keep_results)
        index = data_docs_dir / "index.html"
        localise_pages(
            [index, *pages.values(), *data_docs_dir.glob("expectations/**/*.html")], data_docs_dir
        )
        copy_vendor_assets(data_docs_dir)
        threshold = params.get("quality_threshold")
        legend = LEGEND if threshold is None else f"{LEGEND}; {threshold_legend(threshold)}"
        add_legend([index, *pages.values()], legend)
    results: list[SuiteResult] = []
    for n, result in outcome.items():
        successes = successes_in_suite_order(specs[n], result.results)
        override = session_quality_severity if n == "session_quality" else None
        results += summarise(specs[n], successes, frames[n], params, override)
    page = pages.get("bars_1m") or next(iter(pages.values()))
    seconds = time.perf_counter() - started
    log.info("Data Docs for %s %s built in %.2f s: %s", run_id, session_label, seconds, page)
    return RunReport(page=page, index=index, results=results, pages=pages, seconds=seconds)


def _result_key(suite: str, run: Any, batch_id: str | None) -> Any:
    """The store key GX gives a suite's result of `run` (as a Checkpoint would build it)."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    return ValidationResultIdentifier(
        expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite),
        run_id=run,
        batch_identifier=batch_id,
    )


def _release_batches(site: DocsSite) -> None:
    """Drop the frames GX's execution engine keeps after a run: the context outlives them."""
    source = site.context.data_sources.get("barkeeper_final")
    batches = source.get_execution_engine().batch_manager
    batches.batch_data_cache.clear()
    batches.reset_batch_cache()


def build_run_report(
    run_id: str, session_label: str, frames: Mapping[str, pd.DataFrame], data_docs_dir: Path
) -> Path:
    """Run the end-of-run checkpoint and return the path of the run's validation page."""
    return run_final_checkpoint(run_id, session_label, frames, data_docs_dir).page


def _page_path(context: Any, key: Any) -> Path:
    urls = context.get_docs_sites_urls(resource_identifier=key, site_names=[SITE_NAME])
    url = urls[0]["site_url"]
    return Path(url.removeprefix("file://"))


def prune_results(context: Any, data_docs_dir: Path, keep_results: int) -> int:
    """Delete the oldest stored validation results beyond `keep_results`, and their pages."""
    store = context.validation_results_store
    keys = sorted(store.list_keys(), key=lambda k: k.run_id.run_time, reverse=True)
    stale = keys[keep_results:]
    for key in stale:
        urls = context.get_docs_sites_urls(resource_identifier=key, site_names=[SITE_NAME])
        store.remove_key(key)
        if urls and urls[0].get("site_url"):
            page = Path(urls[0]["site_url"].removeprefix("file://"))
            page.unlink(missing_ok=True)
            for folder in (page.parent, page.parent.parent):  # run_time, then run_name
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
    return len(stale)
