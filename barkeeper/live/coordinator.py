"""The backtest stream coordinator: replays one session's bars into `session_data` in time order.

The whole feed is sorted once (by delivery minute, then bar ts, then symbol) and cut into one
slice per expected minute; a feed already in that order with one on-time bar per slot (a
session read from the repository) is recognised in one pass and used as it is. Each minute
is then one `write_minute` for its on-time bars, one `write_bars` for late or repeated bars,
a clock advance and the handler calls. No per-bar Python object exists except the handler
call itself, which keeps the no-handler path above 5M bars/s.

Delivery: a bar is delivered at the first expected minute ≥ its `deliver_ts` (default: its
ts; never earlier than its ts, so nothing arrives from the future); before the first minute
means the first minute, after the last means the last. The clock advances once per expected
minute, whether or not any bar arrived in it.

Repeats: a (symbol, ts) already delivered is written again (the feed overwrites, see
session_data) and counted as a duplicate, but handlers see each (symbol, ts) once.
Bars whose symbol is not replayed or whose ts is not an expected minute are counted as
outside bars and kept in `outside_frame()`; handlers do not see them.

Handler errors: by default an exception in a handler stops the stream and is re-raised from
`run()` (and from `join()` for the worker thread): a backtest whose strategy failed has no
meaningful result. `on_handler_error="log"` logs and counts it and carries on instead.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date
from enum import Enum
from typing import Any, Literal

import numpy as np
import pandas as pd

from barkeeper.core.panel import BAR_COLUMNS, PRICE_COLUMNS, utc_to_ts
from barkeeper.errors import ParameterError
from barkeeper.live.session_data import Provenance, SessionData

logger = logging.getLogger(__name__)

BarHandler = Callable[[str, int, float, float, float, float, float], Any]
ClockListener = Callable[[int], Any]
SessionListener = Callable[[date], Any]

SECONDS_PER_SESSION_MINUTE = 60.0
SLOT_ORDER_PREFIX = 4096
"""Bars checked before the whole feed when testing whether it is already in delivery order."""


class StreamType(Enum):
    """Kinds of stream the coordinator carries (the seed's enum); bars only for now."""

    BAR = "bar"


def parse_speed(speed: str | float) -> float | None:
    """Pacing as a multiplier of real time: None for "max", 1.0 for "realtime", N for "Nx".

    Raises
    ------
    ParameterError
        Anything else, or a multiplier that is not a positive finite number.
    """
    if isinstance(speed, str):
        text = speed.strip().lower()
        if text == "max":
            return None
        if text == "realtime":
            return 1.0
        number = text[:-1] if text.endswith("x") else text
        try:
            value = float(number)
        except ValueError:
            raise ParameterError(
                f"speed: {speed!r} is not 'max', 'realtime' or a multiplier like '10x'"
            ) from None
    else:
        value = float(speed)
    if not np.isfinite(value) or value <= 0:
        raise ParameterError(f"speed: {speed!r} must be a positive multiplier like '10x'")
    return value


@dataclass
class StreamStats:
    """Counters of one run (reset by each `run`)."""

    bars_fed: int = 0
    bars_delivered: int = 0
    duplicates: int = 0
    late_bars: int = 0
    outside_bars: int = 0
    minutes_delivered: int = 0
    handler_calls: int = 0
    handler_errors: int = 0
    wall_seconds: float = 0.0
    completed: bool = False


@dataclass(eq=False)
class _Plan:
    """The feed arranged for delivery.

    Regular bars (one copy, delivered in their own minute: nearly all) are gathered once into
    minute-major order (`reg_*`, minute m at `reg_bounds[m]:reg_bounds[m + 1]`, symbols
    ascending), so a minute is one contiguous slice. The others (late bars and every copy of
    a repeated slot) are indices into the feed's columns, sorted by (delivery minute, ts,
    symbol) in `irregular` and cut per delivery minute by `bounds`.
    """

    reg_sym: np.ndarray
    reg_values: tuple[np.ndarray, ...]
    reg_bounds: np.ndarray
    values: tuple[np.ndarray, ...]  # open, high, low, close, volume in feed order
    sym: np.ndarray  # row of the symbol, feed order
    col: np.ndarray  # minute index of the bar's ts, feed order
    irregular: np.ndarray
    repeat: np.ndarray  # per irregular row: its slot was delivered before
    bounds: np.ndarray

    @classmethod
    def in_feed_order(
        cls, sym: np.ndarray, col: np.ndarray, values: tuple[np.ndarray, ...], n_minutes: int
    ) -> _Plan:
        """The plan of a feed whose bars are all regular and already minute-major: no gather."""
        none = np.zeros(0, dtype=np.int64)
        return cls(
            reg_sym=sym,
            reg_values=values,
            reg_bounds=np.searchsorted(col, np.arange(n_minutes + 1)),
            values=values,
            sym=sym,
            col=col,
            irregular=none,
            repeat=none.astype(bool),
            bounds=np.zeros(n_minutes + 1, dtype=np.int64),
        )


class BacktestStreamCoordinator:
    """Streams a session's bars in time order into `session_data` and calls bar handlers.

    Parameters
    ----------
    session_data
        The store to write to; its current session (`start_session`) is the one replayed.
    speed
        "max", "realtime" (one session minute per 60 s of wall clock) or a multiplier "Nx".
    on_handler_error
        "raise" (default): stop the stream and re-raise; "log": log, count and continue.
    """

    def __init__(
        self,
        session_data: SessionData,
        speed: str | float = "max",
        on_handler_error: Literal["raise", "log"] = "raise",
    ) -> None:
        if on_handler_error not in ("raise", "log"):
            raise ParameterError(f"on_handler_error: {on_handler_error!r} must be raise or log")
        self.session_data = session_data
        self.speed = parse_speed(speed)
        self.on_handler_error = on_handler_error
        self.stats = StreamStats()
        self._handlers: list[BarHandler] = []
        self._clock_listeners: list[ClockListener] = []
        self._start_listeners: list[SessionListener] = []
        self._end_listeners: list[SessionListener] = []
        self._pending: list[pd.DataFrame] = []
        self._outside = pd.DataFrame(columns=[*BAR_COLUMNS, "deliver_ts"])
        self._stop = threading.Event()
        self._resumed = threading.Event()
        self._resumed.set()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ registration
    def register_handler(self, fn: BarHandler) -> None:
        """Call `fn(symbol, ts, open, high, low, close, volume)` for every delivered bar.

        Handlers run after the bar's minute is written and the clock advanced, so they can
        read `session_data`; an `async def` handler is awaited in delivery order.
        """
        self._handlers.append(fn)

    def add_clock_listener(self, fn: ClockListener) -> None:
        """Call `fn(ts)` after each minute's bars and handlers (sync or async)."""
        self._clock_listeners.append(fn)

    def add_session_listener(
        self, on_start: SessionListener | None = None, on_end: SessionListener | None = None
    ) -> None:
        """Call `on_start(session)` before the first minute and `on_end(session)` after the last.

        `on_end` also runs when the stream is stopped early (`stats.completed` tells which).
        """
        if on_start is not None:
            self._start_listeners.append(on_start)
        if on_end is not None:
            self._end_listeners.append(on_end)

    # ------------------------------------------------------------------ feeding
    def feed_data_list(
        self, symbol: str, stream_type: StreamType, bars: pd.DataFrame | Iterable[Any]
    ) -> None:
        """Queue one symbol's bars (the seed's API).

        `bars` is a DataFrame with ts (int Unix seconds or datetimes) and OHLCV columns, or a
        list of (ts, open, high, low, close, volume) tuples or of dicts with those keys.
        """
        if stream_type is not StreamType.BAR:
            raise ParameterError(f"stream_type: {stream_type!r} is not supported; use BAR")
        if not isinstance(bars, pd.DataFrame):
            rows = list(bars)
            if rows and isinstance(rows[0], dict):
                bars = pd.DataFrame(rows)
            else:
                bars = pd.DataFrame(rows, columns=["ts", *PRICE_COLUMNS])
        frame = bars.copy()
        frame["symbol"] = symbol
        self.feed_frame(frame)

    def feed_frame(self, frame: pd.DataFrame) -> None:
        """Queue bars of any symbols (columns BAR_COLUMNS, optional deliver_ts) for `run`."""
        missing = [c for c in BAR_COLUMNS if c not in frame.columns]
        if missing:
            raise ParameterError(f"bars: missing column(s) {missing}; need {list(BAR_COLUMNS)}")
        cols = [*BAR_COLUMNS, "deliver_ts"] if "deliver_ts" in frame.columns else BAR_COLUMNS
        frame = frame.loc[:, list(cols)]
        for name in set(cols) & {"ts", "deliver_ts"}:
            if not pd.api.types.is_integer_dtype(frame[name]):
                frame[name] = _ts_array(frame[name])
        self._pending.append(frame)

    def outside_frame(self) -> pd.DataFrame:
        """The bars of the last run that had no slot (unknown symbol or unexpected minute)."""
        return self._outside.copy()

    # ------------------------------------------------------------------ control
    def start_worker(self) -> threading.Thread:
        """Run the stream in a background thread; `join()` waits and re-raises its error."""
        if self._thread is not None and self._thread.is_alive():
            raise ParameterError("coordinator: the worker is already running")
        self._error = None
        self._thread = threading.Thread(target=self._worker, name="barkeeper-stream", daemon=True)
        self._thread.start()
        return self._thread

    def _worker(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # handed to join() in the caller's thread
            self._error = exc

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker; True when it has finished. Re-raises the worker's exception."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return True

    def stop(self) -> None:
        """Stop after the current minute (also wakes a paused or pacing stream)."""
        self._stop.set()
        self._resumed.set()

    def pause(self) -> None:
        """Hold the stream before its next minute until `resume` or `stop`."""
        self._resumed.clear()

    def resume(self) -> None:
        self._resumed.set()

    @property
    def is_paused(self) -> bool:
        return not self._resumed.is_set()

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ streaming
    def run(self) -> StreamStats:
        """Stream the queued bars through the current session in the caller's thread.

        Consumes the queue; the session is closed at the end (also when stopped or failed).
        """
        sd = self.session_data
        session = sd.session
        if session is None:
            raise ParameterError("session_data: no session started (call start_session first)")
        self._stop.clear()
        self.stats = StreamStats()
        started = time.perf_counter()
        pending, self._pending = self._pending, []
        plan = self._plan(pending)
        runner = asyncio.Runner() if self._has_async() else None
        try:
            for fn in self._start_listeners:
                self._call(runner, fn, session)
            self._stream(plan, runner)
        finally:
            sd.close_session()
            try:
                for fn in self._end_listeners:
                    self._call(runner, fn, session)
            finally:
                if runner is not None:
                    runner.close()
                self.stats.wall_seconds = time.perf_counter() - started
        return self.stats

    def _has_async(self) -> bool:
        listeners = [
            *self._handlers,
            *self._clock_listeners,
            *self._start_listeners,
            *self._end_listeners,
        ]
        return any(inspect.iscoroutinefunction(fn) for fn in listeners)

    def _plan(self, pending: list[pd.DataFrame]) -> _Plan:
        sd = self.session_data
        minutes = sd.minutes
        n_symbols, n_minutes = len(sd.symbols), len(minutes)
        if len(pending) > 1:
            frame = pd.concat(pending, ignore_index=True)
        else:
            frame = pending[0] if pending else pd.DataFrame(columns=list(BAR_COLUMNS))
        self.stats.bars_fed = len(frame)
        ts = _ts_array(frame["ts"])
        deliver = np.maximum(_ts_array(frame["deliver_ts"]), ts) if "deliver_ts" in frame else ts
        sym = _symbol_rows(frame["symbol"], sd.symbols)
        col, on_minute = _minute_index(minutes, ts)
        slot = (sym >= 0) & on_minute
        values = tuple(frame[c].to_numpy(dtype=np.float64) for c in PRICE_COLUMNS)

        outside = ~slot
        self.stats.outside_bars = int(np.count_nonzero(outside))
        if self.stats.outside_bars:
            outside_frame = frame.loc[outside, list(BAR_COLUMNS)].copy()
            outside_frame["deliver_ts"] = deliver[outside]
            self._outside = outside_frame.reset_index(drop=True)
            keep = np.flatnonzero(slot)
            sym_k, col_k = sym[keep], col[keep]
            at = col_k if deliver is ts else _delivery_index(minutes, deliver[keep])
        else:  # skip the boolean-mask copies of every column
            self._outside = frame.iloc[:0].loc[:, list(BAR_COLUMNS)].assign(deliver_ts=deliver[:0])
            at = col if deliver is ts else _delivery_index(minutes, deliver)
            if _in_slot_order(sym, col, at, n_symbols):
                return _Plan.in_feed_order(sym, col, values, n_minutes)
            keep, sym_k, col_k = np.arange(len(ts)), sym, col
        flat = sym_k * n_minutes + col_k
        copies = np.bincount(flat, minlength=n_symbols * n_minutes)
        regular = (at == col_k) & (copies[flat] == 1)
        # Scatter feed rows into a (minute, symbol) grid, read it back minute-major.
        grid = np.full((n_minutes, n_symbols), -1, dtype=np.int64)
        chosen = slice(None) if regular.all() else np.flatnonzero(regular)
        grid.reshape(-1)[(col_k * n_symbols + sym_k)[chosen]] = keep[chosen]
        filled = grid >= 0
        reg_rows = grid[filled]
        reg_sym = np.nonzero(filled)[1]
        reg_bounds = np.concatenate([[0], np.cumsum(filled.sum(axis=1))])
        # A feed already in delivery order needs no gather.
        in_order = _is_range(reg_rows, len(ts))
        reg_values = values if in_order else tuple(v[reg_rows] for v in values)

        odd = np.flatnonzero(~regular)
        order = _delivery_order(sym[keep[odd]], col[keep[odd]], at[odd])
        irregular, at_odd = keep[odd[order]], at[odd[order]]
        repeat = np.zeros(len(irregular), dtype=bool)
        if len(irregular):
            _, first = np.unique(flat[odd[order]], return_index=True)
            repeat[:] = True
            repeat[first] = False
        self.stats.duplicates = int(repeat.sum())
        self.stats.late_bars = int(((at_odd > col[irregular]) & ~repeat).sum())
        bounds = np.searchsorted(at_odd, np.arange(n_minutes + 1))
        return _Plan(reg_sym, reg_values, reg_bounds, values, sym, col, irregular, repeat, bounds)

    def _stream(self, plan: _Plan, runner: asyncio.Runner | None) -> None:
        sd = self.session_data
        minutes = sd.minutes
        interval = None if self.speed is None else SECONDS_PER_SESSION_MINUTE / self.speed
        origin = time.perf_counter()
        for m in range(len(minutes)):
            if not self._resumed.is_set():
                paused_at = time.perf_counter()
                self._resumed.wait()
                origin += time.perf_counter() - paused_at
            if self._stop.is_set():
                return
            if interval is not None:
                delay = origin + m * interval - time.perf_counter()
                if delay > 0 and self._stop.wait(delay):
                    return
            ts = int(minutes[m])
            self._write(plan, m)
            sd.advance_clock(ts)
            self.stats.minutes_delivered += 1
            if self._handlers:
                self._dispatch(plan, m, runner)
            for fn in self._clock_listeners:
                self._call(runner, fn, ts)
        self.stats.completed = True

    def _write(self, plan: _Plan, m: int) -> None:
        """Write minute m's deliveries: regular bars as one slice, the others scattered."""
        sd = self.session_data
        a, b = int(plan.reg_bounds[m]), int(plan.reg_bounds[m + 1])
        if b > a:
            sd.write_minute(m, plan.reg_sym[a:b], *(v[a:b] for v in plan.reg_values))
        lo, hi = int(plan.bounds[m]), int(plan.bounds[m + 1])
        if hi > lo:
            rows = plan.irregular[lo:hi]
            sd.write_bars(
                plan.sym[rows], plan.col[rows], *(v[rows] for v in plan.values), Provenance.FEED
            )
        self.stats.bars_delivered += b - a + hi - lo

    def _dispatch(self, plan: _Plan, m: int, runner: asyncio.Runner | None) -> None:
        """Call the handlers for minute m's first copies, in (ts, symbol) order."""
        minutes = self.session_data.minutes
        a, b = int(plan.reg_bounds[m]), int(plan.reg_bounds[m + 1])
        sym = plan.reg_sym[a:b]
        ts = [int(minutes[m])] * (b - a)
        values = [v[a:b] for v in plan.reg_values]
        lo, hi = int(plan.bounds[m]), int(plan.bounds[m + 1])
        if hi > lo:
            first = plan.irregular[lo:hi][~plan.repeat[lo:hi]]
            cols = np.concatenate([plan.col[first], np.full(b - a, m)])
            sym = np.concatenate([plan.sym[first], sym])
            order = np.lexsort((sym, cols))
            sym, ts = sym[order], minutes[cols[order]].tolist()
            pairs = zip(plan.values, values, strict=True)
            values = [np.concatenate([v[first], r])[order] for v, r in pairs]
        if len(sym) == 0:
            return
        symbols = self.session_data.symbols
        names = [symbols[i] for i in sym.tolist()]
        columns = [names, ts, *(v.tolist() for v in values)]
        self.stats.handler_calls += len(names) * len(self._handlers)
        if runner is not None:
            runner.run(self._dispatch_async(columns))
            return
        if len(self._handlers) == 1 and self.on_handler_error == "raise":
            fn = self._handlers[0]
            for symbol, t, o, h, low, c, v in zip(*columns, strict=True):
                fn(symbol, t, o, h, low, c, v)
            return
        for bar in zip(*columns, strict=True):
            for fn in self._handlers:
                self._guarded(fn, bar)

    def _guarded(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        try:
            return fn(*args)
        except Exception:
            if self.on_handler_error == "raise":
                raise
            self.stats.handler_errors += 1
            logger.exception("bar handler %r failed on %r", fn, args[:2])
            return None

    async def _dispatch_async(self, columns: list[list[Any]]) -> None:
        for bar in zip(*columns, strict=True):
            for fn in self._handlers:
                result = self._guarded(fn, bar)
                if inspect.isawaitable(result):
                    await self._guarded_await(result, fn, bar)

    async def _guarded_await(
        self, result: Awaitable[Any], fn: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        try:
            await result
        except Exception:
            if self.on_handler_error == "raise":
                raise
            self.stats.handler_errors += 1
            logger.exception("bar handler %r failed on %r", fn, args[:2])

    def _call(self, runner: asyncio.Runner | None, fn: Callable[..., Any], arg: Any) -> None:
        result = self._guarded(fn, (arg,))
        if inspect.isawaitable(result):
            if runner is None:
                raise ParameterError(f"listener {fn!r}: returned an awaitable but is not async")
            runner.run(self._guarded_await(result, fn, (arg,)))


def _ts_array(values: pd.Series) -> np.ndarray:
    """int64 Unix seconds from ints or datetimes."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return utc_to_ts(values)
    return values.to_numpy(dtype=np.int64)


def _symbol_rows(symbols: pd.Series, replayed: tuple[str, ...]) -> np.ndarray:
    """Row index of each bar's symbol in the session; -1 where it is not replayed."""
    codes, uniques = pd.factorize(symbols)
    index = {s: i for i, s in enumerate(replayed)}
    lookup = np.array([index.get(s, -1) for s in uniques] + [-1], dtype=np.int64)
    return lookup[codes]


def _delivery_order(sym: np.ndarray, col: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Stable order by (delivery minute, bar minute, symbol).

    Least-significant-key-first passes of a stable argsort on 16-bit keys, which numpy runs
    as a radix sort: three times faster than `lexsort` on a session of bars.
    """
    order = np.argsort(_narrow(sym), kind="stable")
    if np.any(at != col):
        order = order[np.argsort(_narrow(col)[order], kind="stable")]
    return order[np.argsort(_narrow(at)[order], kind="stable")]


def _narrow(keys: np.ndarray) -> np.ndarray:
    """Non-negative sort keys as int16 when they fit (radix-sortable), else unchanged."""
    return keys.astype(np.int16) if keys.size and keys.max() < 2**15 else keys


def _minute_index(minutes: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column of each ts among the session's minutes (clipped) and whether it is one of them."""
    n = len(minutes)
    if n == 0:
        return np.zeros(len(ts), dtype=np.int64), np.zeros(len(ts), dtype=bool)
    if minutes[-1] - minutes[0] == 60 * (n - 1):  # contiguous: arithmetic, no search
        offset = ts - minutes[0]
        col = offset // 60
        if len(col) and (offset.min() < 0 or col.max() >= n):
            np.clip(col, 0, n - 1, out=col)
        return col, col * 60 == offset
    col = np.minimum(np.searchsorted(minutes, ts), n - 1)
    return col, minutes[col] == ts


def _delivery_index(minutes: np.ndarray, deliver: np.ndarray) -> np.ndarray:
    """The first minute at or after each delivery time (clipped to the session's minutes)."""
    n = len(minutes)
    if minutes[-1] - minutes[0] == 60 * (n - 1):
        return np.minimum(np.maximum(-((minutes[0] - deliver) // 60), 0), n - 1)
    return np.minimum(np.searchsorted(minutes, deliver), n - 1)


def _in_slot_order(sym: np.ndarray, col: np.ndarray, at: np.ndarray, n_symbols: int) -> bool:
    """True when every bar is delivered in its own minute and (minute, symbol) strictly rises.

    Such a feed (a session read from the repository) has no repeated slot and is already in
    delivery order. A short prefix is checked first so a shuffled feed is rejected cheaply.
    """
    if at is not col and not np.array_equal(at, col):
        return False
    for stop in (min(len(sym), SLOT_ORDER_PREFIX), len(sym)):
        key = col[:stop] * n_symbols + sym[:stop]
        if not bool(np.all(key[1:] > key[:-1])):
            return False
    return True


def _is_range(rows: np.ndarray, n: int) -> bool:
    """True when `rows` is exactly 0, 1, …, n - 1."""
    return len(rows) == n and (n == 0 or (rows[0] == 0 and bool(np.all(np.diff(rows) == 1))))
