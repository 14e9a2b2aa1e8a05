"""The end-of-run GX checkpoint and its Data Docs, which must render styled without internet.

A GX run validates 1m bars, derived bars and metrics as in-memory batches (`validate_suites`,
one per replay batch of sessions); one Data Docs build (`build_docs`, once per replay) then
renders only those results' pages plus the index, into a persistent folder, through a docs
context cached per folder for the life of the process.
Stored validation results (and their pages) are kept to the last `keep_results`, so the index,
which reads every stored result, costs the same however many runs came before.

GX's page templates load Bootstrap, jQuery, Font Awesome, ... from public CDNs. After each build
the pages are rewritten (`offline_assets`) to copies of those files taken from Python packages
installed with barkeeper (`static/vendor/` in the Data Docs folder), so the docs work on an
offline desk.
"""

from __future__ import annotations

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
from barkeeper.quality.doc_views import view_config
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
                    "expectations": {"view": view_config("CachedPageView")},
                    "validations": {"view": view_config("CachedPageView")},
                },
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(Path(data_docs_dir).resolve()),
                },
                "site_index_builder": {
                    "class_name": "DefaultSiteIndexBuilder",
                    "validation_results_limit": keep_results,
                    "view": view_config("CachedIndexPageView"),
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
    started = time.perf_counter()
    frames = dict(frames)
    if "session_quality" in frames:
        frames["session_quality"] = prepare_session_quality(frames["session_quality"])
    names = [n for n in SUITE_NAMES if n in frames and not frames[n].empty]
    if not names:
        raise ValueError("run_final_checkpoint needs at least one non-empty frame")
    specs = {n: load_suite_spec(n) for n in names}
    params = checked_parameters(specs, frames, parameters)
    runs = validate_suites(
        f"{run_id}__{session_label}", frames, data_docs_dir, params, keep_results=keep_results
    )
    keys = [r.key for r in runs.values()]
    pages, index = build_docs(data_docs_dir, keys, keep_results, docs_legend(params))
    results: list[SuiteResult] = []
    for n, run in runs.items():
        successes = successes_in_suite_order(specs[n], run.result.results)
        override = session_quality_severity if n == "session_quality" else None
        results += summarise(specs[n], successes, frames[n], params, override)
    by_suite = dict(zip(runs, pages, strict=True))
    page = by_suite.get("bars_1m") or pages[0]
    seconds = time.perf_counter() - started
    log.info("Data Docs for %s %s built in %.2f s: %s", run_id, session_label, seconds, page)
    return RunReport(page=page, index=index, results=results, pages=by_suite, seconds=seconds)


def checked_parameters(
    specs: Mapping[str, Mapping[str, Any]],
    frames: Mapping[str, pd.DataFrame],
    parameters: Mapping[str, float] | None,
) -> dict[str, float]:
    """The suites' `$PARAMETER` values; raise ValueError if a frame lacks a column they read."""
    params: dict[str, float] = {}
    for n, spec in specs.items():
        missing = required_columns(spec) - set(frames[n].columns)
        if missing:
            raise ValueError(f"{n}: frame lacks {sorted(missing)}; prepare it first")
        params.update(suite_parameters(spec, parameters))
    return params


@dataclass
class SuiteRun:
    """One suite's GX result in a checkpoint run, and its key in the results store."""

    result: Any
    key: Any


def validate_suites(
    run_name: str,
    frames: Mapping[str, pd.DataFrame],
    data_docs_dir: Path,
    params: Mapping[str, float],
    *,
    keep_results: int = DEFAULT_KEEP_RESULTS,
    result_format: Mapping[str, Any] = FINAL_RESULT_FORMAT,
) -> dict[str, SuiteRun]:
    """Validate each non-empty prepared frame against its suite, all under one GX run.

    The results are stored (for Data Docs) but no page is built: `build_docs` renders the
    pages of a whole replay at once.
    """
    from great_expectations.core.run_identifier import RunIdentifier

    Path(data_docs_dir).mkdir(parents=True, exist_ok=True)
    site = docs_site(Path(data_docs_dir), keep_results)
    run = RunIdentifier(run_name=run_name, run_time=datetime.now(UTC))
    outcome: dict[str, SuiteRun] = {}
    with site.lock:
        try:
            for n in SUITE_NAMES:
                if n not in frames or frames[n].empty:
                    continue
                result = site.definitions[n].run(
                    batch_parameters={"dataframe": frames[n]},
                    expectation_parameters=dict(params),
                    result_format=dict(result_format),
                    run_id=run,
                )
                key = _result_key(n, run, result.batch_id)
                _judge_by_severity(site.context, key, result, frames[n], params)
                outcome[n] = SuiteRun(result, key)
        finally:
            _release_batches(site)
    return outcome


def docs_legend(params: Mapping[str, float]) -> str:
    """The figures' legend, with the quality threshold's meaning when `params` sets one."""
    threshold = params.get("quality_threshold")
    return LEGEND if threshold is None else f"{LEGEND}; {threshold_legend(threshold)}"


def build_docs(
    data_docs_dir: Path,
    keys: list[Any],
    keep_results: int = DEFAULT_KEEP_RESULTS,
    legend: str = LEGEND,
) -> tuple[list[Path], Path]:
    """Render the pages of stored results `keys` and the index once; their pages and the index.

    Older results beyond `keep_results` are pruned with their pages, and every page is pointed
    at the local copies of its CDN assets; `legend` (see `docs_legend`) heads the pages.
    """
    data_docs_dir = Path(data_docs_dir).resolve()
    data_docs_dir.mkdir(parents=True, exist_ok=True)
    site = docs_site(data_docs_dir, keep_results)
    with site.lock:
        built = [(key, key.expectation_suite_identifier) for key in keys]
        site.context.build_data_docs(
            site_names=[SITE_NAME], resource_identifiers=[i for pair in built for i in pair]
        )
        pages = [_page_path(site.context, key) for key in keys]
        prune_results(site.context, data_docs_dir, keep_results)
        index = data_docs_dir / "index.html"
        localise_pages(
            [index, *pages, *data_docs_dir.glob("expectations/**/*.html")], data_docs_dir
        )
        copy_vendor_assets(data_docs_dir)
        add_legend([index, *pages], legend)
    return pages, index


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


def _judge_by_severity(
    context: Any, key: Any, result: Any, frame: pd.DataFrame, params: Mapping[str, float]
) -> None:
    """Store the suite's result as passed unless a critical failure (past its `error_if`)
    remains: failed warnings never mark a suite failed in the Data Docs index."""
    spec = load_suite_spec(key.expectation_suite_identifier.name)
    summary = summarise(spec, successes_in_suite_order(spec, result.results), frame, params)
    success = all(r.success for r in summary if r.severity == "critical")
    if bool(result.success) != success:
        result.success = success
        context.validation_results_store.set(key, result)


def _release_batches(site: DocsSite) -> None:
    """Drop the frames GX's execution engine keeps after a run: the context outlives them."""
    source = site.context.data_sources.get("barkeeper_final")
    batches = source.get_execution_engine().batch_manager
    batches.batch_data_cache.clear()
    batches.reset_batch_cache()


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
