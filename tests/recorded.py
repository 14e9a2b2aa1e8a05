"""A "recorded" feed built from a bundled vendor file, the way two real sources of a symbol differ.

Deterministic (fixed windows, one seeded generator); data/sample/README.md says what it does.
Run `python tests/recorded.py OUTDIR` to write the recorded files of the sample beside each other.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20230710
TICK = 0.01
DISCONNECTS_ET = (  # (session, first, last minute), exchange time, both included
    ("2023-07-10", "10:12", "10:19"),
    ("2023-07-11", "14:40", "14:52"),
    ("2023-07-12", "09:30", "09:34"),
    ("2023-07-13", "15:55", "15:59"),
)
MISSING_SHARE = 0.005  # single minutes the recorder lost, besides the disconnects
LATE_SHARE = 0.005  # bars written to the file 1-3 rows after where they belong
TICK_SHARE = 0.03  # bars whose close (and high/low, to stay consistent) is one tick off
BAD_PRINTS = 6  # bars whose prices are 25 ticks off (beyond a 5 bps tolerance at ~$340)
VOLUME_OFF_SHARE = 0.02  # bars whose volume is half the vendor's (beyond a 10% tolerance)


def build_recorded(vendor: pd.DataFrame, seed: int = SEED) -> pd.DataFrame:
    """The recorded feed of one vendor file (columns timestamp, open, high, low, close,
    volume; naive UTC text stamps, as the sample files have them), rows in recorded order."""
    rng = np.random.default_rng(seed)
    bars = vendor.copy()
    stamps = pd.to_datetime(bars["timestamp"]).dt.tz_localize("UTC")
    local = stamps.dt.tz_convert("America/New_York")
    keep = np.ones(len(bars), dtype=bool)
    for day, first, last in DISCONNECTS_ET:
        hhmm = local.dt.strftime("%H:%M")
        keep &= ~((local.dt.strftime("%Y-%m-%d") == day) & (hhmm >= first) & (hhmm <= last))
    keep &= rng.random(len(bars)) >= MISSING_SHARE
    bars = bars.loc[keep].reset_index(drop=True)
    n = len(bars)

    tick = rng.random(n) < TICK_SHARE
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    bars.loc[tick, "close"] = (bars.loc[tick, "close"] + sign[tick] * TICK).round(2)
    bad = rng.choice(n, size=min(BAD_PRINTS, n), replace=False)
    for column in ("open", "high", "low", "close"):
        bars.loc[bad, column] = (bars.loc[bad, column] + 25 * TICK).round(2)
    bars["high"] = bars[["open", "high", "low", "close"]].max(axis=1)
    bars["low"] = bars[["open", "high", "low", "close"]].min(axis=1)

    # The recorder sees most but not all trades: volumes a little lower, some much lower.
    share = rng.uniform(0.95, 1.0, n)
    share[rng.random(n) < VOLUME_OFF_SHARE] = 0.5
    bars["volume"] = np.floor(bars["volume"] * share)

    order = np.arange(n, dtype=np.float64)
    late = rng.random(n) < LATE_SHARE
    order[late] += rng.integers(1, 4, late.sum()) + 0.5
    return bars.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)


def write_recorded(vendor_csv: Path, out_dir: Path, seed: int = SEED) -> Path:
    """Write the recorded feed of `vendor_csv` as OUT_DIR/<SYMBOL>_recorded.csv."""
    vendor = pd.read_csv(vendor_csv)
    symbol = vendor_csv.name.split("_", 1)[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{symbol}_recorded.csv"
    build_recorded(vendor, seed).to_csv(path, index=False, lineterminator="\n")
    return path


if __name__ == "__main__":
    sample = Path(__file__).resolve().parents[1] / "data" / "sample"
    for name in ("MSFT", "DBB"):
        print(write_recorded(next(sample.glob(f"{name}_1min_*.csv")), Path(sys.argv[1])))
