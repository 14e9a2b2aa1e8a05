"""Fingerprints of repository slices: one digest per symbol of the rows a run read.

A run stores only what it changed, so its export rebuilds the rest from the repository; the
digest proves the repository still holds exactly the rows the run read.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from barkeeper.core.panel import PRICE_COLUMNS

DIGEST_BYTES = 16


def slice_digests(bars: pd.DataFrame, symbols: Sequence[str]) -> pd.DataFrame:
    """Per symbol of `symbols`: how many rows of `bars` it has and their digest.

    `bars` has BAR_COLUMNS in any order. Each symbol's rows, sorted by ts, are laid out as
    int64 words (ts, then the IEEE-754 bits of open, high, low, close, volume) and hashed
    with blake2b-128 in one call per symbol; a symbol without rows gets the empty digest.

    Returns
    -------
    pandas.DataFrame
        Columns symbol, bars, digest (32 hex characters), in the order of `symbols`.
    """
    symbols = list(symbols)
    codes = pd.Index(symbols).get_indexer(bars["symbol"]).astype(np.int64)
    ts = bars["ts"].to_numpy(dtype=np.int64)
    keep = codes >= 0
    order = np.lexsort((ts[keep], codes[keep]))
    words = np.empty((len(order), 1 + len(PRICE_COLUMNS)), dtype=np.int64)
    words[:, 0] = ts[keep][order]
    for i, name in enumerate(PRICE_COLUMNS, start=1):
        words[:, i] = bars[name].to_numpy(dtype=np.float64)[keep][order].view(np.int64)
    counts = np.bincount(codes[keep], minlength=len(symbols))
    bounds = np.concatenate([[0], np.cumsum(counts)])
    digests = [
        hashlib.blake2b(words[lo:hi].tobytes(), digest_size=DIGEST_BYTES).hexdigest()
        for lo, hi in itertools.pairwise(bounds)
    ]
    return pd.DataFrame({"symbol": symbols, "bars": counts, "digest": digests})
