"""Revisions, not overwrites; quarantine evidence per delivery: what a vendor's later files do to
the bars and quarantine records the earlier ones left (the sample files as the oracle)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from conftest import SAMPLE_DIR
from sqlalchemy import select
from typer.testing import CliRunner

from barkeeper.cli.main import app
from models.engine import engine_for
from models.repository import read_bars, read_quarantine
from models.revisions import read_revisions
from models.tables import IngestedFile

ALL_TIME = (0, 2**40)
MSFT = SAMPLE_DIR / "MSFT_1min_2023-07-10_to_2023-07-13.csv"
CHANGED_ROWS = [10, 400, 2000]  # data rows a later delivery corrects


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def import_json(path: Path, url: str, *flags: str) -> dict:
    code, out, err = run("import", str(path), "--symbol", "MSFT", "--json", "--db", url, *flags)
    assert code == 0, err
    (report,) = json.loads(out)["files"]
    assert report["read"] == (
        report["stored"] + report["revised"] + report["quarantined"] + report["skipped"]
    )
    return report


def corrected(folder: Path) -> tuple[Path, pd.DataFrame]:
    """The second delivery: the sample with three closes (and highs) moved up by 1."""
    frame = pd.read_csv(MSFT)
    later = frame.copy()
    later.loc[CHANGED_ROWS, "close"] += 1
    later.loc[CHANGED_ROWS, "high"] = later.loc[CHANGED_ROWS, ["high", "close"]].max(axis=1)
    path = folder / "MSFT_revised.csv"
    later.to_csv(path, index=False)
    return path, later


def stored_closes(url: str) -> list[float]:
    return read_bars(engine_for(url), ["MSFT"], *ALL_TIME)["close"].tolist()


def test_two_deliveries_keep_both_versions_and_counts_add_up(db_url: str, tmp_path: Path) -> None:
    first = import_json(MSFT, db_url)
    original = pd.read_csv(MSFT)
    assert first["stored"] == len(original)
    path, later = corrected(tmp_path)
    second = import_json(path, db_url)
    assert (second["stored"], second["revised"], second["skipped"]) == (
        0, len(CHANGED_ROWS), len(original) - len(CHANGED_ROWS),
    )  # fmt: skip
    assert stored_closes(db_url) == later["close"].tolist()
    revisions = read_revisions(engine_for(db_url), "MSFT", *ALL_TIME)
    assert revisions["close"].tolist() == original.loc[CHANGED_ROWS, "close"].tolist()
    assert set(revisions["file"]) == {MSFT.name} and set(revisions["replaced_by"]) == {path.name}
    assert set(revisions["source"]) == {"default"}
    # The first file again: its values come back, the second's are kept; nothing flips silently.
    again = import_json(MSFT, db_url)
    assert again["revised"] == len(CHANGED_ROWS)
    assert stored_closes(db_url) == original["close"].tolist()
    revisions = read_revisions(engine_for(db_url), "MSFT", *ALL_TIME)
    assert len(revisions) == 2 * len(CHANGED_ROWS)
    assert sorted(revisions["close"]) == sorted(
        [*original.loc[CHANGED_ROWS, "close"], *later.loc[CHANGED_ROWS, "close"]]
    )
    assert import_json(MSFT, db_url)["skipped"] == len(original)  # identical: nothing changes
    assert len(read_revisions(engine_for(db_url), "MSFT", *ALL_TIME)) == 2 * len(CHANGED_ROWS)


def test_on_conflict_keep_leaves_the_stored_bars(sqlite_url: str, tmp_path: Path) -> None:
    import_json(MSFT, sqlite_url)
    path, _ = corrected(tmp_path)
    report = import_json(path, sqlite_url, "--on-conflict", "keep")
    assert (report["revised"], report["skipped"]) == (0, len(pd.read_csv(MSFT)))
    assert any("kept as stored" in w for w in report["warnings"])
    assert stored_closes(sqlite_url) == pd.read_csv(MSFT)["close"].tolist()
    assert read_revisions(engine_for(sqlite_url), "MSFT", *ALL_TIME).empty


def test_on_conflict_quarantine_keeps_the_new_rows_as_evidence(
    sqlite_url: str, tmp_path: Path
) -> None:
    import_json(MSFT, sqlite_url)
    path, _ = corrected(tmp_path)
    report = import_json(path, sqlite_url, "--on-conflict", "quarantine")
    assert report["reasons"] == {"conflicts_with_stored": len(CHANGED_ROWS)}
    assert stored_closes(sqlite_url) == pd.read_csv(MSFT)["close"].tolist()
    rows = read_quarantine(engine_for(sqlite_url), str(path.resolve()))
    lines = path.read_text().splitlines()
    assert rows["line"].tolist() == [r + 2 for r in CHANGED_ROWS]  # header is line 1
    assert rows["raw"].tolist() == [lines[r + 1] for r in CHANGED_ROWS]


def test_revisions_command_lists_the_earlier_values(sqlite_url: str, tmp_path: Path) -> None:
    import_json(MSFT, sqlite_url)
    path, _ = corrected(tmp_path)
    import_json(path, sqlite_url)
    original = pd.read_csv(MSFT)
    day = str(original.loc[CHANGED_ROWS[0], "timestamp"])[:10]
    code, out, err = run("revisions", "msft", "--date", day, "--json", "--db", sqlite_url)
    assert code == 0, err
    document = json.loads(out)
    on_day = original.loc[CHANGED_ROWS][original.loc[CHANGED_ROWS, "timestamp"].str[:10] == day]
    assert [r["close"] for r in document["revisions"]] == on_day["close"].tolist()
    code, out, _ = run("revisions", "MSFT", "--date", "2023-07-14", "--db", sqlite_url)
    assert code == 0 and "no revised bars" in out
    code, _, err = run("revisions", "MSFT", "--date", "July", "--db", sqlite_url)
    assert code == 2 and err.startswith("barkeeper: error: --date")


def test_a_new_delivery_under_the_same_name_keeps_the_earlier_quarantine(
    sqlite_url: str, tmp_path: Path
) -> None:
    header = "timestamp,open,high,low,close,volume\n"
    path = tmp_path / "NIGHT_1min.csv"
    path.write_text(header + "2023-07-10 13:30:00,1,2,1,2,5\n2023-07-10 13:31:00,1,0.5,1,1,5\n")
    import_json(path, sqlite_url)
    import_json(path, sqlite_url)  # the same bytes again: no second record of the same row
    path.write_text(header + "2023-07-11 13:30:00,1,2,1,2,5\n2023-07-11 13:31:00,x,1,1,1,5\n")
    import_json(path, sqlite_url)  # the next night's delivery, same name
    engine = engine_for(sqlite_url)
    rows = read_quarantine(engine, str(path.resolve()))
    assert rows["reason"].tolist() == ["high_below_low", "non_numeric"]
    assert rows["raw"].str.startswith(("2023-07-10 13:31", "2023-07-11 13:31")).all()
    with engine.connect() as conn:
        hashes = conn.execute(select(IngestedFile.content_hash)).scalars().all()
    assert len(hashes) == 3 and len(set(hashes)) == 2 and all(len(h) == 64 for h in hashes)


def test_a_minute_whose_rows_were_all_quarantined_is_a_quarantined_gap(
    db_url: str, tmp_path: Path
) -> None:
    """The audit's gap statuses: a conflicting minute is `quarantined`, a silent one `no_trade`."""
    from tasks.audit import audit_repository_session

    frame = pd.read_csv(MSFT)
    session = frame["timestamp"].str[:10] == "2023-07-10"
    regular = frame[session & frame["timestamp"].between("2023-07-10 13:30", "2023-07-10 19:59")]
    conflicted, silent = regular.index[15], regular.index[30]
    twin = frame.loc[[conflicted]].assign(close=frame.loc[conflicted, "close"] + 0.5)
    twin["high"] = twin[["high", "close"]].max(axis=1)
    delivered = pd.concat([frame.drop(index=silent), twin]).sort_index(kind="stable")
    path = tmp_path / "MSFT_1min.csv"
    delivered.to_csv(path, index=False)
    report = import_json(path, db_url)
    assert report["reasons"] == {"conflicting_duplicate": 2}
    audit = audit_repository_session.fn(
        db_url, "XNYS", pd.Timestamp("2023-07-10").date(), ["MSFT"], []
    )
    stamps = {
        int(pd.Timestamp(frame.loc[i, "timestamp"], tz="UTC").timestamp()): status
        for i, status in ((conflicted, "quarantined"), (silent, "no_trade"))
    }
    gaps = audit.gaps.set_index("start_ts")["status"].to_dict()
    assert {ts: gaps.get(ts) for ts in stamps} == stamps
