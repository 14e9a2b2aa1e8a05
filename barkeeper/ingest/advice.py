"""What an import report tells the user beyond counts: the stamp convention the volume profile
suggests, and the fix for a file whose rows were mostly quarantined for one reason.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from barkeeper.core.calendar import Calendar
from barkeeper.errors import ParameterError
from barkeeper.ingest.stamps import StampFormat, guess_for

CONVENTION_CALENDAR = "XNYS"
MOSTLY = 0.5  # a reason that takes more than this share of a file's rows gets a fix
OFFSETS = (-60, 0, 60)  # the bar before, at and after a session's first and last minute


def convention_warning(bars: pd.DataFrame, stamp: str) -> str:
    """A warning when the auction volume sits one bar off the session's first and last minute.

    The opening and closing auctions make the first and last regular minutes the busiest of
    their neighbourhood. In most sessions of the file, if both peaks sit one minute later the
    stamps label the bar's close; one minute earlier, the file was open-stamped after all.
    Returns "" when the profile agrees with `stamp` or says nothing (too few sessions).
    """
    if bars.empty:
        return ""
    volume = pd.Series(bars["volume"].to_numpy(), index=bars["ts"].to_numpy())
    first = datetime.fromtimestamp(int(bars["ts"].min()), UTC).date() - timedelta(days=1)
    last = datetime.fromtimestamp(int(bars["ts"].max()), UTC).date()
    calendar = Calendar(CONVENTION_CALENDAR)
    try:
        sessions = calendar.sessions(first, last)
    except ParameterError:  # outside the calendar's range: nothing to say
        return ""
    votes = []
    for session in sessions:
        minutes = calendar.session_minutes(session)
        for edge in (minutes.open_ts, minutes.close_ts - 60):
            around = volume.reindex([edge + d for d in OFFSETS]).fillna(0).to_numpy()
            if around.max() > 0:
                votes.append(OFFSETS[int(np.argmax(around))])
    if len(votes) < 4:
        return ""
    late, early = votes.count(60) / len(votes), votes.count(-60) / len(votes)
    if stamp == "open" and late > MOSTLY:
        return (
            "the opening and closing auction volume falls one minute after the session's first "
            "and last minute: the stamps may label the bar's close; check, and pass --stamp close"
        )
    if stamp == "close" and early > MOSTLY:
        return (
            "with --stamp close the auction volume falls one minute before the session's first "
            "and last minute: the stamps may label the bar's open; import without --stamp close"
        )
    return ""


def fix_for(reasons: dict[str, int], read: int, example: str, fmt: StampFormat) -> str:
    """The fix for a file whose rows were mostly quarantined for one reason ("" otherwise)."""
    if not reasons or read == 0:
        return ""
    reason, count = max(reasons.items(), key=lambda item: item[1])
    if count / read <= MOSTLY:
        return ""
    share = f"{count:,} of {read:,} rows quarantined {reason}"
    if reason == "unparseable_timestamp":
        guess = guess_for(example)
        if guess is not None and guess != fmt:
            flag = guess.pattern if guess.kind == "pattern" else _option(guess)
            return (
                f"{share}: timestamps like {example!r} are not {fmt.describe()}: pass "
                f"--timestamp-format '{flag}'"
            )
        return (
            f"{share}: timestamps like {example!r} are not {fmt.describe()}: pass "
            "--timestamp-format with a strftime pattern such as '%m/%d/%Y %H:%M'"
        )
    hints = {
        "date_only_timestamp": f"stamps like {example!r} carry no time of day: this looks like "
        "a daily file, and barkeeper stores 1-minute bars",
        "not_whole_minute": f"stamps like {example!r} are not whole minutes: 1-minute bars "
        "start on the minute (seconds bars, or epoch stamps in another unit?)",
        "conflicting_duplicate": "the file gives one minute different values: several symbols "
        "in one file, or a time column that was not read? import one symbol per file",
        "timestamp_in_future": f"stamps like {example!r} lie in the future: check --tz and the "
        "epoch unit (--timestamp-format epoch_ms …)",
        "nonexistent_local_time": "check --tz: the stamps do not exist in that zone",
        "missing_value": f"rows like {example!r} leave a required field empty",
        "wrong_field_count": f"rows like {example!r} do not have the header's fields",
    }
    return f"{share}: {hints.get(reason, reason)}"


def _option(fmt: StampFormat) -> str:
    return "iso8601" if fmt.kind == "iso" else f"epoch_{fmt.pattern}"
