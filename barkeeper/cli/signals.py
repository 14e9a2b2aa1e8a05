"""SIGINT and SIGTERM during a command: stop within 2 s, one line, exit 130 / 143, run marked.

The work runs in threads and child processes (the ephemeral Prefect API server, Dask
workers) that a plain KeyboardInterrupt neither stops nor reaps, so an interrupt ends the
process itself: children terminated, this process's `running` runs marked `interrupted`, one
line on stderr, `os._exit`. A session's results are written in one transaction, so a write
cut short is rolled back by the database, never half there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType

import psutil

HANDLED = (signal.SIGINT, signal.SIGTERM)
DEADLINE_S = 1.8  # the process is gone by then whatever the store or the children do
CHILD_GRACE_S = 0.5  # children get this long to exit on SIGTERM before SIGKILL
STORE_WAIT_MS = 800  # a store busy longer than this leaves the marking to the next command


def exit_status(signum: int) -> int:
    """The shell's status for a process ended by `signum`: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + signum


@contextlib.contextmanager
def interrupts(store_url: Callable[[], str]) -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM end the command the barkeeper way (see module doc).

    `store_url` is called only on an interrupt: the store whose runs of this process are
    marked. Outside the main thread (tests calling commands in threads) nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in HANDLED}

    def handle(signum: int, _frame: FrameType | None) -> None:
        stop(signum, store_url)

    for signum in HANDLED:
        signal.signal(signum, handle)  # also where a shell left SIGINT ignored
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def stop(signum: int, store_url: Callable[[], str]) -> None:
    """End this process after `signum`: children, the store, one line, exit status."""
    for handled in HANDLED:  # a second Ctrl-C does not cut this short
        signal.signal(handled, signal.SIG_IGN)
    status = exit_status(signum)
    deadline = threading.Timer(DEADLINE_S, os._exit, args=(status,))
    deadline.daemon = True
    deadline.start()
    stderr = _silence_output()  # worker threads failing from here on print nothing
    children = _terminate_children()
    line = "interrupted: no run was recorded; rerun to finish"
    with contextlib.suppress(Exception):
        line = interrupted_line(store_url())
    _reap(children)
    os.write(stderr, (line + "\n").encode())
    os._exit(status)


def interrupted_line(url: str) -> str:
    """Mark this process's running runs `interrupted` and say so in one line."""
    from models.engine import make_engine
    from models.results import interrupt_own_runs

    engine = make_engine(url)
    try:
        marked = interrupt_own_runs(engine, wait_ms=STORE_WAIT_MS)
    except Exception:  # the store is busy with the write being cut short
        return "interrupted: the run shows as interrupted from the next command on; rerun to finish"
    finally:
        engine.dispose()
    if not marked:
        return "interrupted: no run was recorded; rerun to finish"
    return f"interrupted: run {', '.join(marked)} marked interrupted; rerun to finish"


def _silence_output() -> int:
    """Point stdout and stderr at /dev/null; return a descriptor of the real stderr."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    saved = os.dup(2)
    if os.isatty(saved):
        os.write(saved, b"\x1b[?25h\n")  # a progress bar hid the cursor mid-line
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)
    return saved


def _terminate_children() -> list[psutil.Process]:
    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    return children


def _reap(children: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(children, timeout=CHILD_GRACE_S)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=CHILD_GRACE_S)
