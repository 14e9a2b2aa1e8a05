"""`barkeeper demo`: the first hour's command, the bundled sample replayed through a lossy feed."""

from __future__ import annotations

from pathlib import Path

from barkeeper.cli.app import DbOption, app, database_url, shown_url, user_errors
from barkeeper.cli.replay import build_parameters, print_report, run_replay

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "sample"


@app.command()
@user_errors
def demo(db: DbOption = None) -> None:
    """Import the bundled real sample and replay it through a lossy feed."""
    from barkeeper.ingest.files import ingest_file
    from barkeeper.settings import load_settings
    from models.engine import engine_for
    from models.schema import init_db

    url = database_url(db)
    engine = engine_for(url)
    init_db(engine)
    files = sorted(SAMPLE_DIR.glob("*.csv"))
    for path in files:
        result = ingest_file(engine, path)
        print(
            f"imported {path.name}: read {result.read}, stored {result.stored}, "
            f"quarantined {result.quarantined}, skipped {result.skipped}"
        )
    symbols = [p.name.split("_", 1)[0] for p in files]
    print(
        "replaying the sample with a lossy feed: 5% dropped, an outage 10:00-10:20, "
        "1% corrupted, 1% late, 1% duplicated"
    )
    parameters = build_parameters(
        symbols=symbols,
        start="2023-07-10",
        end="2023-07-13",
        faults={
            "drop_rate": 0.05,
            "outages": ["10:00-10:20"],
            "corrupt_rate": 0.01,
            "out_of_order_rate": 0.01,
            "duplicate_rate": 0.01,
            "seed": 7,
        },
    )
    report = run_replay(parameters, url, quiet=False)
    print_report(report, json_output=False)
    index = (Path(load_settings().reports_dir) / "data_docs" / "index.html").resolve()
    print(f"\nstore:          {shown_url(url)}")
    print(f"Data Docs:      {index}")
    print("next, try:")
    for line in DEMO_NEXT:
        print(f"  {line}")


DEMO_NEXT = (
    "barkeeper report --latest            # the run again, with failed expectations",
    "barkeeper export --latest --symbol DBB --date 2023-07-10 --interval 5",
    "barkeeper replay --symbols all --start 2023-07-10 --fill-policy ffill --ffill-limit 5",
)
"""The three commands the demo suggests (run as written by tests/system/test_first_hour.py)."""
