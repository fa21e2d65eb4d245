"""Decode worker processes writing into shared memory: decoding that scales with cores and survives bad files.

The parent creates one shared-memory block holding every batch buffer; each worker maps it once at start and
decodes runs of files straight into their slots, so pixels never cross a pipe: per file a worker sends back one
small message (None, or the error's status and message). A dispatcher thread in the parent hands runs to idle
workers and watches them:

- a worker that dies (a codec crash, the OOM killer) costs the file it was on an error row; it is replaced and
  the rest of its run goes to the next free worker;
- a worker that spends more than ``file_timeout`` seconds on one file (a hung network mount, a pathological
  image) is killed, with the same outcome;
- Ctrl-C and SIGTERM are the parent's (workers ignore both); closing the pool stops the workers and unlinks the
  block, so nothing is left in /dev/shm. If the parent is killed outright, the workers see their pipe close and
  exit, and multiprocessing's resource tracker unlinks the block.

Workers come from a fork server (spawn where there is none): forking the parent itself is unsafe once it runs
onnxruntime or CUDA threads.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import secrets
import signal
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np

from .decode import DecodeError, Status
from .decode_pool import DecodePool, LoadFn, file_slots, lower_priority
from .errors import DfxError
from .spec import PreprocessSpec

__all__ = ["ProcessDecodePool", "DEFAULT_FILE_TIMEOUT", "SHM_PREFIX"]

log = logging.getLogger("dfx.engine")

DEFAULT_FILE_TIMEOUT = 120.0  # seconds on one file before its worker is declared hung (a 100 MP PNG takes ~2 s)
SHM_PREFIX = "dfx-decode-"  # shared-memory block names, so a leftover is easy to recognise in /dev/shm
_START_METHOD = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
_MAX_FAILURES = 3  # worker deaths in a row that no file explains: past this the pool gives up with an error
_READY = "ready"
_START_TIMEOUT = 60.0  # seconds for the first workers to come up
_TICK = 0.25  # seconds between hang checks while nothing else happens


def _worker_main(conn: Connection, shm_name: str, shape: tuple[int, ...], slot: int, spec: PreprocessSpec,
                 max_pixels: int, load: LoadFn, span: int) -> None:
    """A worker's life: map the buffers, then decode runs of files until told to stop or the parent is gone."""
    # Ctrl-C and SIGTERM reach the whole process group; they are the parent's to handle (it stops the workers).
    # A worker dying of them first would turn good files into error rows.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    lower_priority()
    shm = shared_memory.SharedMemory(name=shm_name)  # mapped for the worker's life; unlinking is the parent's job
    buffers, counters = _views(shm, shape, 0)
    _serve(conn, buffers, counters[slot], spec, max_pixels, load, span)


def _counters_offset(shape: tuple[int, ...]) -> int:
    """Where the counters start in the block: after the float32 buffers, aligned for int64."""
    return -(-int(np.prod(shape)) * 4 // 8) * 8


def _views(shm: shared_memory.SharedMemory, shape: tuple[int, ...], workers: int) -> tuple[np.ndarray, np.ndarray]:
    """The batch buffers and, after them, each worker's (files started, files finished) counters."""
    offset = _counters_offset(shape)
    count = workers or (shm.size - offset) // 16
    return (np.ndarray(shape, np.float32, buffer=shm.buf),
            np.ndarray((count, 2), np.int64, buffer=shm.buf, offset=offset))


def _serve(conn: Connection, buffers: np.ndarray, counter: np.ndarray, spec: PreprocessSpec, max_pixels: int,
           load: LoadFn, span: int) -> None:
    conn.send(_READY)
    try:
        while (task := conn.recv()) is not None:
            buffer, items = task
            results = []
            for slot, path in items:
                counter[0] += 1  # started: the parent tells from the counters which file a dead worker was on
                result = load(path, spec, file_slots(buffers[buffer], slot, span), max_pixels)
                counter[1] += 1  # finished
                # A DecodeError does not pickle (its fields are not its args): send its fields.
                results.append(("error", result.status, result.message) if isinstance(result, DecodeError)
                               else ("ok", result))
            conn.send(results)  # one message per run, not per file: the parent's GIL is the scan's too
    except (EOFError, OSError):  # the parent is gone
        pass


@dataclass
class _Run:
    """Files to decode into consecutive slots of one buffer; ``pending`` indexes those not yet handed out."""

    future: Future
    buffer: int
    first: int
    paths: list[Path]
    errors: list[Any] = field(default_factory=list)  # per file: a DecodeError, or what the load returned
    pending: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.errors = [None] * len(self.paths)
        self.pending = list(range(len(self.paths)))


@dataclass
class _Worker:
    proc: Any
    conn: Connection
    slot: int  # its row of the counters
    ready: bool = False
    run: _Run | None = None
    sent: list[int] = field(default_factory=list)  # the run's file indices it was given
    base: int = 0  # its files-started counter when it was given them
    seen: int = 0  # counters' sum at the last sign of progress
    since: float = field(default_factory=time.monotonic)  # when that was


def _why(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


class ProcessDecodePool(DecodePool):
    """Decode worker processes over a shared-memory block (see the module docstring).

    Args:
        file_timeout: seconds a worker may spend on one file before it is killed and the file gets an error row.
        (others: see :class:`DecodePool`).

    Raises:
        DfxError: when shared memory cannot hold the buffers (a small /dev/shm, common in containers).
    """

    mode = "processes"

    def __init__(self, *args, file_timeout: float = DEFAULT_FILE_TIMEOUT, **kwargs):
        super().__init__(*args, **kwargs)
        self.file_timeout = file_timeout
        nbytes = _counters_offset(self.shape) + 16 * self.workers
        _check_shm_space(nbytes)
        self._shm = shared_memory.SharedMemory(name=f"{SHM_PREFIX}{os.getpid()}-{secrets.token_hex(4)}",
                                               create=True, size=nbytes)
        self.buffers, self._counters = _views(self._shm, self.shape, self.workers)
        self._counters[:] = 0
        self._ctx = mp.get_context(_START_METHOD)
        if _START_METHOD == "forkserver":
            self._ctx.set_forkserver_preload([__name__])  # numpy, Pillow and dfx imported once, not per worker
        self._queue: deque[_Run] = deque()  # appended by submit (any thread), popped by the dispatcher only
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._stopping = False
        self._error: BaseException | None = None
        self._failures = 0
        self._closed = False
        try:
            self._workers = [self._spawn(slot) for slot in range(self.workers)]
        except BaseException:
            self._release()
            raise
        self._ready = threading.Event()  # set once every first worker is up, or the pool has failed
        self._thread = threading.Thread(target=self._dispatch, name="dfx-decode-dispatch", daemon=True)
        self._thread.start()
        # Waiting here turns a pool that cannot start (e.g. a script without an ``if __name__ == "__main__":``
        # guard, which worker processes re-import) into an error now, while auto mode can still use threads.
        self._ready.wait(_START_TIMEOUT)
        if self._error is not None or not self._ready.is_set():
            error = self._error or DfxError(f"decode worker processes did not start within {_START_TIMEOUT:g} s")
            self.close()
            raise error

    # --- the caller's side -------------------------------------------------------------------------------------
    def submit(self, paths, buffer: int, first: int) -> Future:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise RuntimeError("submit on a closed decode pool")
        run = _Run(Future(), buffer, first, [Path(p) for p in paths])
        self._queue.append(run)
        self._wake_w.send_bytes(b"")
        return run.future

    def close(self) -> None:
        if self._closed:
            return
        self._closed = self._stopping = True
        self._wake_w.send_bytes(b"")
        self._thread.join()
        for run in [*self._queue, *(w.run for w in self._workers if w.run is not None)]:
            run.future.cancel()
        self._queue.clear()
        self._wake_r.close()
        self._wake_w.close()
        self._release()

    # --- the dispatcher thread ---------------------------------------------------------------------------------
    def _spawn(self, slot: int) -> _Worker:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker_main, name="dfx-decode", daemon=True,
                                 args=(child, self._shm.name, self.shape, slot, self.spec, self.max_pixels, self.load,
                                       self.span))
        proc.start()
        child.close()
        return _Worker(proc, parent, slot)

    def _dispatch(self) -> None:
        try:
            while not self._stopping:
                self._assign()
                by_conn = {w.conn: w for w in self._workers}
                by_sentinel = {w.proc.sentinel: w for w in self._workers}
                for obj in wait([self._wake_r, *by_conn, *by_sentinel], timeout=_TICK):
                    if obj is self._wake_r:
                        while self._wake_r.poll():
                            self._wake_r.recv_bytes()
                    elif obj in by_conn:
                        self._receive(by_conn[obj])
                    elif by_sentinel[obj] in self._workers:  # not already replaced via its pipe
                        self._receive(by_sentinel[obj])
                        if by_sentinel[obj] in self._workers:
                            self._replace(by_sentinel[obj], None)
                self._check_hangs()
        except BaseException as e:  # noqa: BLE001 - surfaces in the caller through every pending future
            self._error = e if isinstance(e, DfxError) else DfxError(f"decode workers failed: {e!r}")
            for run in [*self._queue, *(w.run for w in self._workers if w.run is not None)]:
                if not run.future.done():
                    run.future.set_exception(self._error)
            self._queue.clear()
        finally:
            self._ready.set()
            self._stop_workers()

    def _assign(self) -> None:
        for w in self._workers:
            if not self._queue:
                return
            if w.ready and w.run is None:
                run = self._queue.popleft()
                # Read while the worker is idle: once it has the run it counts up at once.
                w.base = int(self._counters[w.slot, 0])
                w.seen, w.since = int(self._counters[w.slot].sum()), time.monotonic()
                try:
                    w.conn.send((run.buffer, [(run.first + i * self.span, run.paths[i]) for i in run.pending]))
                except OSError:  # died since its last message: the sentinel reports it; the run waits for another
                    self._queue.appendleft(run)
                    continue
                w.run, w.sent, run.pending = run, run.pending, []

    def _receive(self, w: _Worker) -> None:
        """Reads every message the worker has sent; a closed pipe means it died."""
        try:
            while w.conn.poll():
                msg = w.conn.recv()
                if msg == _READY:
                    w.ready = True
                    if all(x.ready for x in self._workers):
                        self._ready.set()
                    continue
                run = w.run
                for i, result in zip(w.sent, msg):
                    run.errors[i] = DecodeError(*result[1:]) if result[0] == "error" else result[1]
                w.run, self._failures = None, 0
                run.future.set_result(run.errors)
        except (EOFError, OSError):
            self._replace(w, None)

    def _check_hangs(self) -> None:
        now = time.monotonic()
        for w in list(self._workers):
            if w.run is None:
                continue
            progress = int(self._counters[w.slot].sum())
            if progress != w.seen:
                w.seen, w.since = progress, now
            elif now - w.since > self.file_timeout:
                self._receive(w)  # it may have finished just now
                if w in self._workers and w.run is not None:
                    w.proc.kill()
                    self._replace(w, f"took longer than {self.file_timeout:g} s and was stopped")

    def _replace(self, w: _Worker, why: str | None) -> None:
        """Retires a dead (or hung, already killed) worker: the file it was on gets an error row, the rest of its
        run goes back to the queue, and a new worker takes its place."""
        w.proc.join(5)
        why = why or _why(w.proc.exitcode)
        w.conn.close()
        self._workers.remove(w)
        run, culprit = w.run, None
        if run is not None:
            started, finished = (int(c) for c in self._counters[w.slot])
            if started > finished:  # it died inside a file: that file is the culprit, the others are retried
                culprit = w.sent[started - w.base - 1]
                err = DecodeError(Status.DECODE_ERROR, f"the decode worker {why} while decoding this file")
                run.errors[culprit] = err
                log.warning("%s: %s", run.paths[culprit], err.message)
                self._counters[w.slot, 1] = started  # the replacement starts with the counters level
            run.pending = [i for i in w.sent if run.errors[i] is None]
            if run.pending:
                self._queue.appendleft(run)
            else:
                run.future.set_result(run.errors)
        # A death no file explains (at start-up, between files) must not repeat forever: a broken environment.
        self._failures = 0 if culprit is not None else self._failures + 1
        if self._failures >= _MAX_FAILURES:
            raise DfxError(f"decode worker processes keep dying (the last one {why}); use --decode threads, or, "
                           f"in a script, guard its entry point with if __name__ == '__main__':")
        if not self._stopping:
            self._workers.append(self._spawn(w.slot))

    def _stop_workers(self) -> None:
        for w in self._workers:
            try:
                if w.run is None and w.proc.is_alive():
                    w.conn.send(None)
                else:
                    w.proc.kill()  # mid-file (Ctrl-C, an error): its slot's contents no longer matter
            except OSError:
                pass
        deadline = time.monotonic() + 5
        for w in self._workers:
            w.proc.join(max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join()
            w.conn.close()

    def _release(self) -> None:
        """Unlinks the shared block (the name goes at once; the memory when the last view of it is dropped)."""
        self.buffers = self._counters = None
        try:
            self._shm.close()
        except BufferError:  # a caller still holds a view of a buffer; the mapping goes with it
            pass
        self._shm.unlink()


def _check_shm_space(nbytes: int) -> None:
    """Refuses buffers that /dev/shm cannot hold: writing past its end kills the writer with SIGBUS."""
    try:
        st = os.statvfs("/dev/shm")
    except OSError:  # not Linux: shared memory is not a size-limited file system there
        return
    free = st.f_bavail * st.f_frsize
    if free < nbytes:
        raise DfxError(f"the decode buffers need {nbytes / 2**20:.0f} MiB of shared memory but /dev/shm has "
                       f"{free / 2**20:.0f} MiB free; use a smaller --batch-size, --decode threads, or a larger "
                       f"/dev/shm (docker run --shm-size)")
