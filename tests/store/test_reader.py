"""Large SQLite reads go through the reading process and come back identical to a read here."""

from __future__ import annotations

import pandas as pd
import pytest

import models.reader as reader
import models.repository as repository
from barkeeper.bench.replay import BENCH_SESSION, seed_repository
from barkeeper.core.calendar import Calendar
from models.engine import engine_for

SYMBOLS = 300  # x 390 minutes: over CHILD_ROWS, so the read is the child's


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('reader') / 'bars.db'}"
    return url, seed_repository(url, SYMBOLS)


def _session_read(url: str, names: list[str]) -> pd.DataFrame:
    minutes = Calendar().session_minutes(BENCH_SESSION).minutes
    return repository.read_bars(engine_for(url), names, int(minutes[0]), int(minutes[-1]) + 60)


def _read_here(url: str, names: list[str], monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    with monkeypatch.context() as patch:
        patch.setattr(repository, "CHILD_ROWS", 10**18)
        return _session_read(url, names)


def _not_here(*args: object) -> list[tuple]:
    raise AssertionError("read in this process, not by the reading child")


def test_a_large_read_is_the_childs_and_equals_a_read_here(store, monkeypatch) -> None:
    url, names = store
    here = _read_here(url, names, monkeypatch)
    assert len(here) > reader.CHILD_ROWS // 2  # the synthetic session drops a few bars
    monkeypatch.setattr(repository, "_fetch", _not_here)
    pd.testing.assert_frame_equal(_session_read(url, names), here)


def test_a_child_that_died_is_replaced_and_nothing_is_lost(store, monkeypatch) -> None:
    url, names = store
    here = _read_here(url, names, monkeypatch)
    _session_read(url, names)
    first = reader._helper._process
    assert first is not None
    first.kill()
    first.wait()
    monkeypatch.setattr(repository, "_fetch", _not_here)
    pd.testing.assert_frame_equal(_session_read(url, names), here)
    assert reader._helper._process is not None and reader._helper._process.pid != first.pid


def test_a_read_the_child_cannot_make_is_made_here_with_its_usual_error(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    engine_for(url).connect().close()  # a file without the bar table
    with pytest.raises(Exception, match="no such table: bar"):
        _session_read(url, [f"S{i}" for i in range(SYMBOLS)])
