"""The end-of-run GX checkpoint and its Data Docs, which must render styled without internet.

One checkpoint per run and session validates the session's 1m bars, derived bars and metrics;
its Data Docs action renders only that run's pages plus the index, into a persistent folder.
Stored validation results (and their pages) are kept to the last `keep_results`, so the index,
which reads every stored result, costs the same however many runs came before.

GX's page templates load Bootstrap, jQuery, Font Awesome, ... from public CDNs. After each build
the pages are rewritten to copies of those files taken from Python packages installed with
barkeeper (`static/vendor/` in the Data Docs folder), so the docs work on an offline desk.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from barkeeper.validation import (
    SUITE_NAMES,
    SuiteResult,
    add_suite,
    load_suite_spec,
    prepare_session_quality,
    required_columns,
    successes_in_suite_order,
    suite_parameters,
    summarise,
)

log = logging.getLogger(__name__)

SITE_NAME = "barkeeper"
RESULTS_SUBDIR = ".validations"
VENDOR_SUBDIR = "static/vendor"
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


# ---------------------------------------------------------------- offline assets


def _package_dir(module: str) -> Path:
    import importlib

    return Path(importlib.import_module(module).__file__).resolve().parent


def vendor_sources() -> dict[str, Path]:
    """Local copies of the CDN files GX pages load: vendor-relative name → installed file.

    Bootstrap is xstatic-bootstrap 4.5.3 (GX names 4.3.1; same major, same markup), whose
    `bootstrap.bundle` carries Popper, so GX's separate popper.js tag is dropped.
    """
    from xstatic.pkg import bootstrap, jquery

    fa = _package_dir("fontawesomefree") / "static" / "fontawesomefree"
    return {
        "bootstrap/css/bootstrap.min.css": Path(bootstrap.BASE_DIR) / "css" / "bootstrap.min.css",
        "bootstrap/js/bootstrap.bundle.min.js": Path(bootstrap.BASE_DIR)
        / "js"
        / "bootstrap.bundle.min.js",
        "jquery/jquery.min.js": Path(jquery.BASE_DIR) / "jquery.min.js",
        "fontawesome/css/all.min.css": fa / "css" / "all.min.css",
        "fontawesome/webfonts": fa / "webfonts",
    }


# CDN URL (as in GX's templates) → vendor-relative file, or None to drop the tag: optional
# extras (table filter controls, date picker, dark theme, Vega charts of profiling pages) that no
# installed package ships and that our pages do not need.
_BOOTSTRAP_CDN = "bootstrapcdn.com/bootstrap/4.3.1"
_CDNJS = "https://cdnjs.cloudflare.com/ajax/libs"
_BOOTSTRAP_BUNDLE = "bootstrap/js/bootstrap.bundle.min.js"  # Bootstrap 4 with Popper inside
CDN_MAP: dict[str, str | None] = {
    f"https://maxcdn.{_BOOTSTRAP_CDN}/css/bootstrap.min.css": "bootstrap/css/bootstrap.min.css",
    f"https://stackpath.{_BOOTSTRAP_CDN}/js/bootstrap.min.js": _BOOTSTRAP_BUNDLE,
    f"{_CDNJS}/popper.js/1.12.9/umd/popper.min.js": None,
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/jquery.min.js",
    f"{_CDNJS}/font-awesome/6.6.0/css/all.min.css": "fontawesome/css/all.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "barkeeper/table.js",
}
_TAG = re.compile(
    r"<(script|link)\b[^>]*?(?:src|href)=\"(https?://[^\"]+)\"[^>]*>(?:\s*</script>)?", re.S
)
_INTEGRITY = re.compile(r"\s+(?:integrity|crossorigin)=\"[^\"]*\"")
_GX_WEB_ASSET = re.compile(r"https://great-expectations-web-assets\.[^'\")\s]+")
_CDN_HOSTS = ("cdn.", "cdnjs.", "unpkg.com", "code.jquery.com", "bootstrapcdn.com")

# No installed package ships bootstrap-table, whose script fills GX's index tables from a JS
# array. This stand-in renders those rows as a plain Bootstrap table with a search box and
# clickable rows; other bootstrap-table methods (filter controls) do nothing.
TABLE_JS = """(function ($) {
  $.fn.bootstrapTable = function (options) {
    if (typeof options !== "object") { return this; }
    var attrs = window[options.rowAttributes] || function () { return {}; };
    return this.each(function () {
      var table = $(this).addClass("table table-bordered table-hover bk-table");
      var columns = options.columns || [];
      var head = $("<tr>");
      columns.forEach(function (c) { head.append($("<th>").text(c.title || c.field)); });
      var body = $("<tbody>");
      (options.data || []).forEach(function (row, i) {
        var tr = $("<tr>").attr(attrs(row, i)).css("cursor", "pointer");
        columns.forEach(function (c) {
          var value = row[c.field];
          tr.append($("<td>").html(value == null ? "" : String(value)));
        });
        tr.on("click", function (e) {
          if ($(e.target).closest("a").length === 0) {
            table.trigger("click-row.bs.table", [row, tr]);
          }
        });
        body.append(tr);
      });
      table.empty().append($("<thead>").append(head), body);
      if (String(options.search) === "true" && options.toolbar) {
        var box = $("<input type='search' placeholder='Search'>")
          .addClass("form-control form-control-sm");
        box.on("input", function () {
          var q = box.val().toLowerCase();
          body.children().each(function () {
            $(this).toggle($(this).text().toLowerCase().indexOf(q) >= 0);
          });
        });
        $(options.toolbar).empty().append(box);
      }
    });
  };
})(jQuery);
"""


def copy_vendor_assets(data_docs_dir: Path) -> Path:
    """Copy the vendored scripts, styles and fonts into `<data_docs_dir>/static/vendor/`."""
    vendor = Path(data_docs_dir) / VENDOR_SUBDIR
    (vendor / "barkeeper").mkdir(parents=True, exist_ok=True)
    (vendor / "barkeeper" / "table.js").write_text(TABLE_JS)
    for name, source in vendor_sources().items():
        target = vendor / name
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
    return vendor


def localise_page(html: str, page: Path, data_docs_dir: Path) -> str:
    """Point a page's CDN tags at the local vendor copies; drop tags nothing local can serve.

    `integrity`/`crossorigin` attributes go too: they pin the CDN file's hash and would make a
    browser refuse a local file (file:// has no CORS). GX's hosted logo becomes its local copy.
    """
    depth = len(page.resolve().relative_to(Path(data_docs_dir).resolve()).parts) - 1
    root = "../" * depth

    def swap(match: re.Match[str]) -> str:
        url = match.group(2)
        if url not in CDN_MAP and not any(host in url for host in _CDN_HOSTS):
            return match.group(0)
        local = CDN_MAP.get(url)
        if local is None:
            return ""
        return _INTEGRITY.sub("", match.group(0).replace(url, f"{root}{VENDOR_SUBDIR}/{local}"))

    html = _TAG.sub(swap, html)
    return _GX_WEB_ASSET.sub(f"{root}static/images/logo-long.png", html)


def localise_pages(pages: list[Path], data_docs_dir: Path) -> None:
    """Rewrite `pages` in place (see `localise_page`)."""
    for page in pages:
        if page.is_file():
            page.write_text(localise_page(page.read_text(), page, data_docs_dir))


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
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(Path(data_docs_dir).resolve()),
                },
                "site_index_builder": {
                    "class_name": "DefaultSiteIndexBuilder",
                    "validation_results_limit": keep_results,
                },
            }
        },
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        analytics_enabled=False,
    )
    return gx.get_context(mode="ephemeral", project_config=config)


@functools.cache
def run_docs_action() -> type:
    """The checkpoint action that builds Data Docs: the run's pages, then the index, once.

    GX's own UpdateDataDocsAction rebuilds the index once per validation result (three times
    per run here); the index reads every stored result, so once is worth a class. Defined on
    first use because GX registers action types globally (and importing GX is slow).
    """
    from great_expectations.checkpoint.actions import DataDocsAction
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
    )

    class BuildRunDataDocs(DataDocsAction):
        type: Literal["barkeeper_run_data_docs"] = "barkeeper_run_data_docs"
        site_names: list[str] = []  # noqa: RUF012 (a pydantic field, copied per instance)

        def run(self, checkpoint_result: Any, action_context: Any = None) -> dict:
            identifiers: list[Any] = []
            for key, result in checkpoint_result.run_results.items():
                identifiers += [key, ExpectationSuiteIdentifier(name=result.suite_name)]
            return self._build_data_docs(
                site_names=self.site_names, resource_identifiers=identifiers
            )

    return BuildRunDataDocs


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
    """Validate a session's prepared frames in one GX checkpoint whose action builds Data Docs.

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
    import great_expectations as gx
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
    context = docs_context(data_docs_dir, keep_results)
    specs = {n: load_suite_spec(n) for n in names}
    for n in names:
        missing = required_columns(specs[n]) - set(frames[n].columns)
        if missing:
            raise ValueError(f"{n}: frame lacks {sorted(missing)}; prepare it first")
    params: dict[str, float] = {}
    for n in names:
        params.update(suite_parameters(specs[n], parameters))
    # Checkpoint.run hands the same batch parameters to every validation definition, so the
    # three frames cannot all be in-memory dataframe batches: each becomes a parquet asset.
    with tempfile.TemporaryDirectory(prefix="barkeeper-gx-") as tmp:
        source = context.data_sources.add_pandas("barkeeper_final")
        definitions = []
        for n in names:
            path = Path(tmp) / f"{n}.parquet"
            frames[n].to_parquet(path, index=False)
            batch = source.add_parquet_asset(n, path=path).add_batch_definition_whole_dataframe(n)
            suite = add_suite(context, specs[n])
            definitions.append(
                context.validation_definitions.add(
                    gx.ValidationDefinition(name=n, data=batch, suite=suite)
                )
            )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name="barkeeper_final",
                validation_definitions=definitions,
                actions=[run_docs_action()(name="data_docs", site_names=[SITE_NAME])],
                result_format=FINAL_RESULT_FORMAT,
            )
        )
        run = RunIdentifier(run_name=f"{run_id}__{session_label}", run_time=datetime.now(UTC))
        outcome = checkpoint.run(expectation_parameters=params, run_id=run)
    pages: dict[str, Path] = {}
    results: list[SuiteResult] = []
    for key, result in outcome.run_results.items():
        suite = result.suite_name
        pages[suite] = _page_path(context, key)
        spec = specs[suite]
        successes = successes_in_suite_order(spec, result.results)
        override = session_quality_severity if suite == "session_quality" else None
        results += summarise(spec, successes, frames[suite], params, override)
    prune_results(context, data_docs_dir, keep_results)
    index = data_docs_dir / "index.html"
    localise_pages(
        [index, *pages.values(), *data_docs_dir.glob("expectations/**/*.html")], data_docs_dir
    )
    copy_vendor_assets(data_docs_dir)
    page = pages.get("bars_1m") or next(iter(pages.values()))
    seconds = time.perf_counter() - started
    log.info("Data Docs for %s %s built in %.2f s: %s", run_id, session_label, seconds, page)
    return RunReport(page=page, index=index, results=results, pages=pages, seconds=seconds)


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
