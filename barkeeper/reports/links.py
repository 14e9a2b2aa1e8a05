"""Links to report pages as a browser can follow them from the Prefect UI.

A web page may not open `file://` URLs, so pages link over HTTP when the reports folder is
served (`BARKEEPER_REPORTS_URL`, e.g. by `make serve`), and are shown as paths otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote


@dataclass(frozen=True)
class ReportsSite:
    """The reports folder and, when it is served over HTTP, the URL it is served at."""

    folder: Path
    url: str | None = None

    def link(self, page: str | Path) -> str | None:
        """The page's http:// address, or None without a reports URL or outside the folder."""
        if not self.url:
            return None
        try:
            relative = Path(page).resolve().relative_to(Path(self.folder).resolve())
        except ValueError:
            return None
        return f"{self.url.rstrip('/')}/{quote(relative.as_posix())}"

    def markdown(self, label: str, page: str | Path) -> str:
        """A markdown link to the page, or its label and path in code when it is not served."""
        url = self.link(page)
        return f"[{label}]({url})" if url else f"{label}: `{page}`"
