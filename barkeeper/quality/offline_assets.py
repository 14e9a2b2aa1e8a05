"""Offline Data Docs: local copies of the CDN scripts, styles and fonts GX pages load, and the
rewrite of the pages' CDN tags to point at them (`static/vendor/` in the Data Docs folder)."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

VENDOR_SUBDIR = "static/vendor"


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


LEGEND_CLASS = "barkeeper-legend"


def add_legend(pages: list[Path], text: str) -> None:
    """Put a one-line legend at the top of each page's body (once, however often rebuilt)."""
    line = (
        f'<p class="{LEGEND_CLASS}" style="margin:8px 16px;padding:6px 10px;'
        f'background:#f5f5f5;border-left:4px solid #1f77b4;font-size:14px">{html.escape(text)}</p>'
    )
    for page in pages:
        if not page.is_file():
            continue
        content = page.read_text()
        if LEGEND_CLASS in content:
            continue
        content, found = re.subn(r"(<body[^>]*>)", lambda m: m.group(1) + line, content, count=1)
        if found:
            page.write_text(content)
