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

from barkeeper.core.panel import BAR_COLUMNS, PRICE_COLUMNS
from barkeeper.errors import ParameterError
from barkeeper.live.delivery import DeliveryPlan, plan_delivery, ts_array
from barkeeper.live.session_data import SessionData
from barkeeper.live.session_records import Provenance

logger = logging.getLogger(__name__)

BarHandler = Callable[[str, int, float, float, float, float, float], Any]
ClockListener = Callable[[int], Any]
SessionListener = Callable[[date], Any]

SECONDS_PER_SESSION_MINUTE = 60.0


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
                frame[name] = ts_array(frame[name])
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
        plan, self._outside = plan_delivery(pending, sd.symbols, sd.minutes, self.stats)
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

    def _stream(self, plan: DeliveryPlan, runner: asyncio.Runner | None) -> None:
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

    def _write(self, plan: DeliveryPlan, m: int) -> None:
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

    def _dispatch(self, plan: DeliveryPlan, m: int, runner: asyncio.Runner | None) -> None:
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
