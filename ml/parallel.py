"""Local training of a round's clients across processes, bit-identical to training them one by one.

Processes, not threads: a client's training is a long chain of small TensorFlow ops
that one runtime runs one after the other. The "spawn" start method, because
TensorFlow is not fork-safe. A :class:`TrainingPool` is started once per run: every
worker gets the model spec and every client's (x, y) in its initializer, so a round
sends only base weights and seeds (:class:`TrainTask`) and gets :class:`TrainResult`
back, in the order of the tasks. The (x, y) travel as .npy files the workers map
into memory (one copy in the page cache for all of them), not inside the start-up
message: a new process that dies before reading a start-up message larger than a
pipe's buffer leaves the parent blocked in ``Process.start`` for ever.

Bit-identical to ``workers=1`` (plain ``train_local`` in this process) because a
worker runs the same ``train_local`` with this process's intra-op thread count
(``ml.models.INTRA_OP_THREADS`` unless TensorFlow was started before ``ml`` set
it): on this project's machines 1 thread against 2 changed the CNN's weights
(float sums split otherwise). The inter-op pool changed no result, so workers
get one inter-op thread, to oversubscribe the cores less.
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from contextlib import contextmanager
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .models import ModelSpec
from .training import TrainConfig, TrainingError, TrainResult, train_local, warm_up

AUTO = "auto"
START_TIMEOUT = 300.0  # seconds a worker may take to import TensorFlow and build the model


class PoolError(RuntimeError):
    """Local training could not finish; the one-line message names the client."""


@dataclass(frozen=True)
class TrainTask:
    """One client's training in one round: all a worker needs besides the data it got at start-up."""

    client: int  # index of the client's (x, y) in the pool's data
    round_id: int
    weights: list[np.ndarray]  # the round's base model
    config: TrainConfig
    seed: int


TrainFn = Callable[[ModelSpec, np.ndarray, np.ndarray, TrainTask], TrainResult]


def train_task(spec: ModelSpec, x: np.ndarray, y: np.ndarray, task: TrainTask) -> TrainResult:
    """The one training call both paths make, so workers=N and workers=1 cannot drift apart."""
    c = task.config
    return train_local(spec, task.weights, x, y, epochs=c.epochs, batch_size=c.batch_size,
                       learning_rate=c.learning_rate, mu=c.mu, seed=task.seed)


def check_workers(value: int | str) -> int | str:
    """``"auto"`` or a positive integer (also given as text, as on the command line)."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if isinstance(value, bool) or n < 1 or (isinstance(value, float) and value != n):
        raise ValueError(f"--workers must be 'auto' or a positive integer, got {value!r}")
    return n


def available_cpus() -> int:
    """Cores this process may run on (the affinity mask, which containers narrow; else os.cpu_count())."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# Seconds a worker takes to import TensorFlow and build the model on this project's 2-core machines
# (bench.parallel: 6-8 s). `auto` starts workers only when the first round's training says they will
# save more than that over the rounds left.
WORKER_STARTUP_ESTIMATE = 8.0


def workers_pay_off(training_seconds: float, rounds_left: int, workers: int, startup: float | None = None) -> bool:
    """Whether `workers` processes would save more training time than their start-up costs, judged from
    one round's in-process training time (a round's clients split over the workers, at best)."""
    startup = WORKER_STARTUP_ESTIMATE if startup is None else startup
    return workers > 1 and training_seconds * (1 - 1 / workers) * rounds_left > startup


def resolve_workers(value: int | str, clients: int, cpus: int | None = None) -> int:
    """How many processes train: ``auto`` = one per core, never more than there are clients."""
    value = check_workers(value)
    if value == AUTO:
        return max(1, min(cpus or available_cpus(), clients))
    return min(int(value), max(1, clients))


# --------------------------------------------------------------------------- worker side


@dataclass
class _Worker:
    spec: ModelSpec
    data: Sequence[tuple[np.ndarray, np.ndarray]]
    train_fn: TrainFn
    slot: int
    running: Any  # shared array: the client each worker is training (-1: none)
    slots: Any  # shared counter: how many workers have started


_WORKER: _Worker | None = None


def _save_data(data: Sequence[tuple[np.ndarray, np.ndarray]], folder: str) -> list[tuple[str, str]]:
    """Each client's (x, y) as two .npy files; returns their paths."""
    paths = []
    for i, (x, y) in enumerate(data):
        px, py = os.path.join(folder, f"x{i}.npy"), os.path.join(folder, f"y{i}.npy")
        np.save(px, np.ascontiguousarray(x))
        np.save(py, np.ascontiguousarray(y))
        paths.append((px, py))
    return paths


def _worker_init(spec: ModelSpec, paths: Sequence[tuple[str, str]], train_fn: TrainFn,
                 intra_threads: int, slots: Any, running: Any, pids: Any) -> None:
    """Runs once in each worker: quiet TensorFlow, the parent's thread settings, the data mapped."""
    global _WORKER
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads in this new process
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    from .models import import_tensorflow

    tf = import_tensorflow()
    tf.config.threading.set_intra_op_parallelism_threads(intra_threads)  # the parent's: same float results
    tf.config.threading.set_inter_op_parallelism_threads(1)  # changes no result, spares the cores
    data = [(np.load(px, mmap_mode="r"), np.load(py, mmap_mode="r")) for px, py in paths]
    warm_up(spec)
    with slots.get_lock():
        slot = slots.value
        slots.value += 1
    pids[slot] = os.getpid()
    _WORKER = _Worker(spec, data, train_fn, slot, running, slots)


def _worker_ready(workers: int, timeout: float) -> int:
    """Returns once every worker has started, so the pool's start-up is paid before round 1."""
    assert _WORKER is not None
    deadline = time.monotonic() + timeout
    while _WORKER.slots.value < workers and time.monotonic() < deadline:
        time.sleep(0.02)
    return os.getpid()


def _worker_train(task: TrainTask) -> TrainResult:
    w = _WORKER
    assert w is not None, "the training worker was not initialised"
    w.running[w.slot] = task.client
    try:
        x, y = w.data[task.client]
        return w.train_fn(w.spec, x, y, task)
    finally:
        w.running[w.slot] = -1


# --------------------------------------------------------------------------- the pool


def _how(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


@contextmanager
def _sigint_ignored_by_new_processes() -> Iterator[None]:
    """Processes started inside begin with SIGINT ignored (exec keeps an ignored signal ignored), so that
    Ctrl-C reaches only the parent, which stops them, and no worker prints a KeyboardInterrupt traceback.
    A Ctrl-C during these moments is lost; outside the main thread signals cannot be changed: no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)


class _SharedState:
    """What the workers report to the parent: which client each one trains, and its pid."""

    def __init__(self, ctx: Any, workers: int):
        self.slots = ctx.Value("i", 0)
        self.running = ctx.Array("q", [-1] * workers, lock=False)
        self.pids = ctx.Array("q", [0] * workers, lock=False)


class TrainingPool:
    """Trains TrainTasks on ``workers`` processes (1: in this process, no subprocess), results in order.

    Use it as a context manager: it starts the workers on entry, without waiting for them
    (the first ``train`` or ``wait_ready`` does), and stops them on exit, at once (no
    waiting for running tasks) when leaving on an error or Ctrl-C.
    """

    def __init__(self, spec: ModelSpec, data: Sequence[tuple[np.ndarray, np.ndarray]], workers: int = 1,
                 names: Sequence[str] = (), train_fn: TrainFn = train_task):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.spec = spec
        self.data = list(data)
        self.workers = workers
        self.names = list(names)
        self.train_fn = train_fn
        self.startup_seconds = 0.0  # from start to every worker ready (the caller may do other work meanwhile)
        self._executor: ProcessPoolExecutor | None = None
        self._ready: list[Future] = []  # the workers' start-up, until wait_ready() has seen it end
        self._t0 = 0.0
        self._folder = ""  # the .npy files of the clients' data, while workers run
        self._shared: _SharedState | None = None
        self._procs: dict[int, Any] = {}

    def name(self, client: int) -> str:
        return self.names[client] if client < len(self.names) else f"#{client}"

    # ------------------------------------------------------------ life cycle
    def __enter__(self) -> "TrainingPool":
        if self.workers > 1:
            self._start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(kill=exc_type is not None)

    def _start(self) -> None:
        """Starts the workers without waiting for them (they import TensorFlow while the caller goes on)."""
        import multiprocessing

        from .models import import_tensorflow

        self._t0 = time.perf_counter()
        ctx = multiprocessing.get_context("spawn")
        intra = import_tensorflow().config.threading.get_intra_op_parallelism_threads()
        self._shared = shared = _SharedState(ctx, self.workers)
        self._folder = tempfile.mkdtemp(prefix="chainfl-training-")
        try:
            paths = _save_data(self.data, self._folder)
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=ctx, initializer=_worker_init,
                initargs=(self.spec, paths, self.train_fn, intra, shared.slots, shared.running, shared.pids))
            others = {p.pid for p in multiprocessing.active_children()}
            with _sigint_ignored_by_new_processes():  # the executor starts one process per submit
                self._ready = [self._executor.submit(_worker_ready, self.workers, START_TIMEOUT)
                               for _ in range(self.workers)]
            self._procs = {p.pid: p for p in multiprocessing.active_children() if p.pid not in others}
        except BaseException:
            self.close(kill=True)
            raise

    def ready(self) -> bool:
        """Whether every worker has started, without waiting (False after a failed start: see wait_ready)."""
        if not self._ready:
            return self._executor is not None or self.workers == 1
        if not all(f.done() for f in self._ready):
            return False
        try:
            self.wait_ready()
        except PoolError:
            return False
        return True

    def wait_ready(self) -> float:
        """Blocks until every worker has started; returns the seconds it waited (0 once started)."""
        if not self._ready:
            return 0.0
        t0 = time.perf_counter()
        try:
            for f in self._ready:
                f.result(timeout=START_TIMEOUT)
        except BrokenProcessPool:
            self.close(kill=True)
            raise PoolError(f"the {self.workers} training workers failed to start (their errors are printed "
                            "above); --workers 1 trains in this process") from None
        except TimeoutError:
            self.close(kill=True)
            raise PoolError(f"the {self.workers} training workers did not start within {START_TIMEOUT:.0f} s; "
                            "try --workers 1") from None
        self._ready = []
        self.startup_seconds = time.perf_counter() - self._t0
        return time.perf_counter() - t0

    def close(self, kill: bool = False) -> None:
        """Stops the workers; ``kill`` terminates them at once instead of letting running tasks end."""
        ex, self._executor, self._ready = self._executor, None, []
        if ex is not None:
            if kill:
                for p in self._procs.values():
                    if p.exitcode is None:
                        p.terminate()
            ex.shutdown(wait=True, cancel_futures=True)
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = ""

    # ------------------------------------------------------------ training
    def train(self, tasks: Sequence[TrainTask]) -> list[TrainResult]:
        """Each task's result, in the order of ``tasks``; PoolError names the client that failed."""
        tasks = list(tasks)
        for t in tasks:
            if not 0 <= t.client < len(self.data):
                raise ValueError(f"task for client index {t.client}, but the pool holds {len(self.data)} clients")
        if self.workers == 1:
            return [self._train_here(t) for t in tasks]
        if self._executor is None:
            raise RuntimeError("TrainingPool with workers > 1 must be entered (`with TrainingPool(...) as pool`)")
        self.wait_ready()
        futures: list[Future] = [self._executor.submit(_worker_train, t) for t in tasks]
        out = []
        try:
            for t, f in zip(tasks, futures):
                out.append(f.result())
        except TrainingError as exc:
            raise PoolError(self._failed(t, exc)) from exc
        except BrokenProcessPool:
            message = self._died(tasks)
            self.close(kill=True)
            raise PoolError(message) from None
        finally:
            for f in futures:
                f.cancel()  # after a failure: what has not started yet need not run
        return out

    def _train_here(self, t: TrainTask) -> TrainResult:
        x, y = self.data[t.client]
        try:
            return self.train_fn(self.spec, x, y, t)
        except TrainingError as exc:
            raise PoolError(self._failed(t, exc)) from exc

    def _failed(self, t: TrainTask, exc: BaseException) -> str:
        return f"local training of client {self.name(t.client)} in round {t.round_id} failed: {exc}"

    def _died(self, tasks: list[TrainTask]) -> str:
        """Which worker died, how, and the client it was training (from what the workers reported)."""
        shared = self._shared
        assert shared is not None
        if self._executor is not None:
            # The broken executor's manager thread terminates and reaps every worker. Reading exit codes
            # while it runs races its waitpid (the loser sees no exit code), so let it finish first.
            self._executor.shutdown(wait=True, cancel_futures=True)
        round_id = tasks[0].round_id if tasks else 0
        culprits = []
        for slot in range(self.workers):
            p = self._procs.get(shared.pids[slot])
            if p is None:
                continue
            p.join(timeout=5)
            if p.exitcode not in (None, 0, -signal.SIGTERM):  # the others were terminated by the pool
                culprits.append((int(shared.running[slot]), p.exitcode))
        if len(culprits) == 1 and culprits[0][0] >= 0:
            client, code = culprits[0]
            round_id = next((t.round_id for t in tasks if t.client == client), round_id)
            return (f"the training worker for client {self.name(client)} in round {round_id} died "
                    f"({_how(code)}); the other workers were stopped")
        how = ", ".join(_how(code) for _, code in culprits) or "cause unknown"
        pending = ", ".join(self.name(t.client) for t in tasks)
        return f"a training worker died ({how}) in round {round_id} while training clients {pending}"
