"""A vendor file streamed as a replay's feed without importing it (`replay --feed-file`).

The file is parsed and checked by the import rules once; its good bars are the feed, its bad
rows are counted in the run (read = bars + quarantined + skipped), never silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from barkeeper.ingest.checks import REASONS
from barkeeper.ingest.files import ParsedFile, parse_file


@dataclass(frozen=True)
class FileFeed:
    """The parsed feed file: its good bars by minute, and what was rejected."""

    parsed: ParsedFile

    @classmethod
    def open(cls, path: str | Path, tz: str = "UTC") -> FileFeed:
        """Parse `path` (symbol from the file name, as `import` takes it); raises
        InputFileError or ParameterError as `import` would."""
        return cls(parse_file(path, None, tz))

    @property
    def symbols(self) -> list[str]:
        return [self.parsed.symbol] if len(self.parsed.bars) else []

    def read_bars(self, symbols: Sequence[str], start_ts: int, end_ts: int) -> pd.DataFrame:
        """The file's bars of `symbols` with start_ts <= ts < end_ts, sorted by ts then symbol
        (the repository reader's contract)."""
        bars = self.parsed.bars
        ts = bars["ts"].to_numpy(dtype=np.int64)
        keep = (ts >= start_ts) & (ts < end_ts) & bars["symbol"].isin(list(symbols)).to_numpy()
        frame = bars.loc[keep].reset_index(drop=True)
        return frame.sort_values(["ts", "symbol"], ignore_index=True, kind="stable")

    def report(self) -> dict[str, Any]:
        """What the run made of the file, shaped like one file of `import --json`."""
        parsed = self.parsed
        reasons = parsed.quarantine["reason"].value_counts()
        return {
            "path": parsed.path,
            "symbol": parsed.symbol,
            "read": parsed.read,
            "bars": len(parsed.bars),
            "quarantined": len(parsed.quarantine),
            "skipped": parsed.skipped,
            "reasons": {r: int(reasons[r]) for r in REASONS if r in reasons.index},
        }
