"""A helper process that runs this process's functions on the other core.

Pure-Python work holds the interpreter's one lock: while GX validates a batch, or SQLite turns
rows into tuples, a replay's stream and upkeep wait. A `Helper` runs such calls in
`python -m barkeeper.core.child` (a plain subprocess: multiprocessing's spawn would run the
parent's `__main__` again), started once and kept: a call goes down a pipe as
`("module:function", args)` pickled, its result or exception comes back the same way. The
child can import its heavy modules at start-up (`preload`), on the other core while this
process does its own start-up. It ignores Ctrl-C (the parent's to handle); it is stopped when
the parent exits, and ends by itself when the pipe closes (a parent that was killed).
"""

from __future__ import annotations

import atexit
import importlib
import pickle
import signal
import struct
import subprocess
import sys
import threading
from typing import IO, Any

_HEADER = struct.Struct("!Q")  # the byte length of the message that follows


class HelperUnavailable(Exception):
    """The helper cannot take the call (it failed to start, died, or is busy): run it here."""


class Helper:
    """One helper process, its calls one at a time.

    Parameters
    ----------
    preload
        Modules the child imports as soon as it starts, before any call.
    """

    def __init__(self, *preload: str) -> None:
        self.preload = preload
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        atexit.register(self._end_with_parent)

    def start(self) -> None:
        """Start the child now (if not running), so its imports overlap this process's work."""
        with self._lock:
            self._running()

    def call(self, target: str, *args: Any, wait: bool = True) -> Any:
        """`target(*args)` ("package.module:function") run by the child; its exception, if it
        raised one, is raised here.

        Raises
        ------
        HelperUnavailable
            The child could not run it (not started, died), or, with `wait=False`, is busy.
        """
        if not self._lock.acquire(blocking=wait):
            raise HelperUnavailable("the helper is busy")
        try:
            process = self._running()
            try:
                _send(process.stdin, pickle.dumps((target, args), protocol=5))
                ok, payload = _receive(process.stdout)
            except (OSError, EOFError, struct.error) as error:
                self._stop()
                raise HelperUnavailable(f"the helper process ended: {error}") from None
        finally:
            self._lock.release()
        result = pickle.loads(payload)
        if not ok:
            raise result
        return result

    def stop(self) -> None:
        with self._lock:
            self._stop()

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "barkeeper.core.child", *self.preload],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # failures come back as exceptions, never as noise
            )
        except OSError as error:
            self._process = None
            raise HelperUnavailable(f"the helper process did not start: {error}") from None
        return self._process

    def _end_with_parent(self) -> None:
        """At exit, without the lock (a thread may hold it): nothing outlives the command."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=5)

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()


def _send(pipe: IO[bytes] | None, data: bytes) -> None:
    assert pipe is not None
    pipe.write(_HEADER.pack(len(data)))
    pipe.write(data)
    pipe.flush()


def _read_exactly(pipe: IO[bytes] | None, size: int) -> bytes:
    assert pipe is not None
    data = pipe.read(size)
    if len(data) != size:
        raise EOFError("the other end of the pipe closed")
    return data


def _receive(pipe: IO[bytes] | None) -> tuple[bool, bytes]:
    (size,) = _HEADER.unpack(_read_exactly(pipe, _HEADER.size))
    payload = _read_exactly(pipe, size)
    return payload[:1] == b"1", payload[1:]


def _reply(target: str, args: tuple[Any, ...]) -> bytes:
    try:
        module, name = target.split(":")
        result = getattr(importlib.import_module(module), name)(*args)
        return b"1" + pickle.dumps(result, protocol=5)
    except Exception as error:
        try:
            return b"0" + pickle.dumps(error, protocol=5)
        except Exception:  # an exception that does not pickle: its message does
            return b"0" + pickle.dumps(RuntimeError(f"{type(error).__name__}: {error}"))


def _serve(preload: list[str]) -> None:
    """The child's loop: a call in, its result out, until the parent closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a print inside a call must not corrupt the replies
    for module in preload:
        importlib.import_module(module)
    while True:
        try:
            (size,) = _HEADER.unpack(_read_exactly(requests, _HEADER.size))
            target, args = pickle.loads(_read_exactly(requests, size))
        except EOFError:
            return
        _send(replies, _reply(target, args))


if __name__ == "__main__":
    _serve(sys.argv[1:])
