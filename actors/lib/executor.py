"""Where a batch command's files run: in this process (``LocalExecutor``) or on a Dask cluster (``DaskExecutor``).

Both batch commands (``sensorium batch audio``, ``batch events``) describe
their work as a ``BatchJob``: a picklable description of the model settings
with ``setup`` (load the model: once per process), ``run`` (one file's result
line) and ``failed`` (the error line of a file that never produced one). An
executor turns a stream of ``Task`` (a file, its user) into a stream of
``Outcome`` (the task, its line, where it ran) as files finish; the command
alone writes the lines (``actors.lib.batch``), so results, resume and
compaction are the same whichever executor ran the files.

The Dask executor (the ``cluster`` extra, ``distributed``):

* the model is loaded once per worker process by a worker plugin
  (``ModelPlugin``), kept in a per-process cache keyed by the job's settings,
  so a long-lived worker serving many nightly runs loads it once;
* files are submitted a window at a time (``in_flight`` tasks) and results
  come back with ``as_completed``: the client holds the window, never the
  whole list, so its memory stays flat however many files there are;
* robustness is Dask's, configured: a task whose worker dies (killed, over
  its memory limit) is rescheduled, and after ``allowed_failures`` deaths the
  scheduler gives up on it (``KilledWorker``): a poisoned file that kills
  every worker it touches becomes one error line, the run goes on;
* Dask has no per-task time-out: ``Deadline`` is checked by the job between
  decode chunks (a file over its limit is one error line), and a watchdog
  ends the worker process when a task is still running at twice its limit
  plus 30 s (a decoder stuck in C code never returns to check), which Dask then
  handles as a died worker;
* a scheduler address off loopback must be ``tls://`` with certificates
  (``check_scheduler_address``, ``security_for``): a plain ``tcp://`` one is
  refused with how to set up TLS.

Test seam: ``SENSORIUM_TEST_CRASH_MARKER``, read by the worker-side task, makes the worker process exit
(``os._exit``) on a file whose name contains its value: the poisoned file of the tests, a real process death
as a decoder crash would be. Unset (always, outside the tests), it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import ipaddress
import logging
import os
import pickle
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Protocol
from urllib.parse import urlsplit

import psutil

CRASH_MARKER_ENV = "SENSORIUM_TEST_CRASH_MARKER"
HARD_LIMIT_FACTOR = 2.0
HARD_LIMIT_GRACE_S = 30.0
"""A task still running at ``HARD_LIMIT_FACTOR`` x its time limit + this has its worker process ended."""
DEFAULT_ALLOWED_FAILURES = 3
"""Worker deaths a task may cause before it is given up (Dask's own default)."""
SCHEDULER_CONFIG = {"distributed.scheduler.worker-saturation": 1.0}
"""One file at a time per worker thread: with more queued on a worker, a poisoned file's deaths would count
against the innocent files queued beside it (a died worker marks all it was processing), and after
``allowed_failures`` they would be given up with it. A scheduler started for Sensorium needs the same
(README, 'Many users, many machines')."""
EXTRA_HINT = "pip install 'sensorium[cluster]' (the 'cluster' extra: Dask's distributed)"


class FileTimeLimit(Exception):
    """A file went over its time limit (raised by ``Deadline.check`` between decode chunks)."""


class BatchSetupError(Exception):
    """The job's model cannot be loaded (the message names the file): the command exits 2."""


class ClusterError(Exception):
    """A cluster option that cannot work (missing extra, insecure address, no certificates): exit 2."""


@dataclass(frozen=True)
class Task:
    """One file of a batch run."""

    path: str
    """Absolute path of the file, as workers see it too (a shared folder): the key of its result line."""
    user: str = "."
    """Whose file it is (``batch events --per-user``)."""


@dataclass
class Deadline:
    """A file's time limit, checked by the job between decode chunks."""

    path: str
    limit_s: float | None
    started: float = field(default_factory=time.monotonic)

    def check(self) -> None:
        if self.limit_s is not None and time.monotonic() - self.started > self.limit_s:
            raise FileTimeLimit(f"{self.path}: over its time limit of {self.limit_s:g} s (--file-timeout-s), "
                                "stopped")


class BatchJob(Protocol):
    """What a batch command runs per file; picklable (it travels to Dask workers)."""

    def setup(self) -> Any:
        """Load the model(s): once per process. Raises BatchSetupError naming the bad file."""

    def run(self, state: Any, task: Task, deadline: Deadline, progress: Any = None) -> dict[str, Any]:
        """One file's result line (a bad file is an error line, never an exception)."""

    def failed(self, task: Task, error: str) -> dict[str, Any]:
        """The error line of a file that produced none (over its time limit, killed its workers)."""


@dataclass
class Outcome:
    task: Task
    record: dict[str, Any]
    rss_bytes: int
    """RSS of the process that ran the file, right after it (bytes)."""
    where: str = "local"
    """The worker's address, or ``local``."""


def run_task(job: BatchJob, state: Any, task: Task, limit_s: float | None, progress: Any = None) -> dict[str, Any]:
    """One file through ``job`` with its deadline; over the limit, the file's error line."""
    try:
        return job.run(state, task, Deadline(task.path, limit_s), progress)
    except FileTimeLimit as exc:
        return job.failed(task, str(exc))


class LocalExecutor:
    """Today's path: every file in this process, in order, one model."""

    def __init__(self, file_timeout_s: float | None = None) -> None:
        self.file_timeout_s = file_timeout_s
        self._job: BatchJob | None = None
        self._state: Any = None

    def prepare(self, job: BatchJob) -> None:
        self._job, self._state = job, job.setup()

    def results(self, tasks: Iterable[Task], progress: Any = None) -> Iterator[Outcome]:
        assert self._job is not None, "prepare(job) first"
        me = psutil.Process()
        for task in tasks:
            record = run_task(self._job, self._state, task, self.file_timeout_s, progress)
            yield Outcome(task, record, me.memory_info().rss)

    def close(self) -> None:
        self._job = self._state = None


# --- Dask -------------------------------------------------------------------------------------------------------

_STATES: dict[str, Any] = {}
"""Per worker process: plugin name -> the loaded model(s), kept across runs on a long-lived worker."""


def job_key(job: BatchJob) -> str:
    """A name for the job's settings: equal settings, one model per worker."""
    digest = hashlib.sha256(pickle.dumps(job)).hexdigest()[:12]
    return f"sensorium-{type(job).__name__}-{digest}"


try:
    from distributed import WorkerPlugin as _PluginBase
except ImportError:  # the 'cluster' extra is not installed: the local path still works
    _PluginBase = object  # type: ignore[assignment,misc]


class ModelPlugin(_PluginBase):  # type: ignore[misc,valid-type]
    """Loads the job's model once per worker process (at registration, and on every worker that joins or
    restarts after a death)."""

    def __init__(self, job: BatchJob) -> None:
        self.job = job
        self.name = job_key(job)

    def setup(self, worker: Any) -> None:
        if self.name not in _STATES:
            relax_malloc_trim()
            _STATES[self.name] = self.job.setup()


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def relax_malloc_trim() -> None:
    """Undo Dask's ``MALLOC_TRIM_THRESHOLD_=65536`` for a model worker: set in the environment, it also freezes
    glibc's mmap threshold at 128 KiB, so every buffer of a model call over that is mmapped, page-faulted and
    unmapped again. Measured on Whisper: +1.5 CPU s per 35 s file (a third more) in system time. A worker's
    memory here is the model plus one file (flat), so returning every free page buys nothing; trim at 64 MiB,
    mmap from 32 MiB (glibc's own dynamic ceiling)."""
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return
    libc.mallopt(M_TRIM_THRESHOLD, 64 << 20)
    libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)


def _on_worker(name: str, task: Task, limit_s: float | None) -> tuple[dict[str, Any], int]:
    """The task Dask runs: one file through the plugin's model; returns its line and the worker's RSS."""
    from distributed import get_worker  # noqa: PLC0415 - only ever runs on a worker

    marker = os.environ.get(CRASH_MARKER_ENV)
    if marker and marker in os.path.basename(task.path):
        os._exit(70)  # the test seam: a file that kills its worker (module docstring)
    plugin = get_worker().plugins[name]
    watchdog = None
    if limit_s is not None:
        watchdog = threading.Timer(limit_s * HARD_LIMIT_FACTOR + HARD_LIMIT_GRACE_S, _stuck, (task.path,))
        watchdog.daemon = True
        watchdog.start()
    try:
        record = run_task(plugin.job, _STATES[name], task, limit_s)
    finally:
        if watchdog is not None:
            watchdog.cancel()
    return record, psutil.Process().memory_info().rss


def _stuck(path: str) -> None:
    logging.getLogger("sensorium.batch").error("%s: still running at %gx its time limit + %g s: ending this worker",
                                               path, HARD_LIMIT_FACTOR, HARD_LIMIT_GRACE_S)
    os._exit(71)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


TLS_HOWTO = ("use tls://HOST:8786 with a CA and a client certificate: --tls-ca-file ca.pem --tls-cert client.pem "
             "--tls-key client.key (or distributed.comm.tls.ca-file / .client.cert / .client.key in Dask's "
             "configuration), the scheduler and workers started with --tls-ca-file/--tls-cert/--tls-key; see the "
             "README, 'Many users, many machines'")


def check_scheduler_address(address: str) -> str:
    """Why ``address`` is refused ('' when it is fine): off loopback, only ``tls://``."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls"):
        return f"scheduler address {address!r}: expected tcp://HOST:PORT (loopback) or tls://HOST:PORT"
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or port is None:
        return f"scheduler address {address!r}: expected SCHEME://HOST:PORT"
    if parts.scheme == "tcp" and not is_loopback(host):
        return f"scheduler address {address!r}: plain tcp:// off loopback is refused (unencrypted, unauthenticated); " \
               + TLS_HOWTO
    return ""


def security_for(address: str, ca_file: str = "", cert: str = "", key: str = "") -> Any:
    """Dask Security for ``address``: None for loopback tcp://; for tls:// the given files, else Dask's
    configured ones (``distributed.comm.tls.*``), refused when there is no CA."""
    if not address.startswith("tls://"):
        return None
    from distributed.security import Security  # noqa: PLC0415

    files = {"tls_ca_file": ca_file, "tls_client_cert": cert, "tls_client_key": key}
    security = Security(require_encryption=True, **{k: v for k, v in files.items() if v})
    if not security.tls_ca_file:
        raise ClusterError(f"scheduler address {address!r}: no CA file for TLS; " + TLS_HOWTO)
    for name in ("tls_ca_file", "tls_client_cert", "tls_client_key"):
        path = getattr(security, name)
        if path and not os.path.isfile(path):
            raise ClusterError(f"{name.replace('_', '-')} {path}: no such file")
    return security


def import_distributed() -> Any:
    try:
        import distributed  # noqa: PLC0415
    except ImportError as exc:
        raise ClusterError(f"--workers/--scheduler need Dask's distributed: {EXTRA_HINT}") from exc
    return distributed


class DaskExecutor:
    """Files as Dask tasks on a cluster: a ``LocalCluster`` this executor starts and stops (``workers``), or an
    existing scheduler (``scheduler``)."""

    def __init__(self, prog: str, *, workers: int = 0, scheduler: str = "", security: Any = None,
                 file_timeout_s: float | None = None, memory_limit: str = "auto",
                 allowed_failures: int = DEFAULT_ALLOWED_FAILURES, in_flight: int = 0) -> None:
        distributed = import_distributed()
        import dask  # noqa: PLC0415

        self.prog, self.file_timeout_s = prog, file_timeout_s
        self._stack = contextlib.ExitStack()
        self._plugin: ModelPlugin | None = None
        try:
            if scheduler:
                try:
                    client = distributed.Client(scheduler, security=security, timeout="30s")
                except (OSError, TimeoutError) as exc:  # refused, unreachable, TLS handshake failed
                    raise ClusterError(f"cannot connect to the scheduler {scheduler}: {exc}") from exc
                self.client = self._stack.enter_context(client)
            else:
                # The scheduler runs in this process and reads these at start (SCHEDULER_CONFIG).
                with dask.config.set({**SCHEDULER_CONFIG,
                                      "distributed.scheduler.allowed-failures": allowed_failures}):
                    cluster = self._stack.enter_context(distributed.LocalCluster(
                        n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=None, memory_limit=memory_limit, silence_logs=logging.ERROR))
                self.client = self._stack.enter_context(distributed.Client(cluster))
        except BaseException:
            self._stack.close()
            raise
        threads = sum(self.client.nthreads().values()) or 1
        self.in_flight = in_flight or max(4, 2 * threads)

    def prepare(self, job: BatchJob) -> None:
        plugin = ModelPlugin(job)
        try:
            self.client.register_plugin(plugin, name=plugin.name)
        except BatchSetupError:
            with contextlib.suppress(Exception):  # a failed plugin would be set up again on every new worker
                self.client.unregister_worker_plugin(plugin.name)
            raise
        self._plugin = plugin

    def results(self, tasks: Iterable[Task], progress: Any = None) -> Iterator[Outcome]:  # noqa: ARG002
        from distributed import as_completed  # noqa: PLC0415
        from distributed.scheduler import KilledWorker  # noqa: PLC0415

        assert self._plugin is not None, "prepare(job) first"
        name, job = self._plugin.name, self._plugin.job
        pending = iter(tasks)
        running: dict[Any, Task] = {}
        completed = as_completed()

        def submit_next() -> None:
            task = next(pending, None)
            if task is not None:
                future = self.client.submit(_on_worker, name, task, self.file_timeout_s, pure=False,
                                            key=f"{name}-{hashlib.sha1(task.path.encode()).hexdigest()[:16]}-"
                                                f"{time.monotonic_ns()}")
                running[future] = task
                completed.add(future)

        for _ in range(self.in_flight):
            submit_next()
        for future in completed:
            task = running.pop(future)
            where = ""
            try:
                record, rss = future.result()
                where = "dask"
            except KilledWorker as exc:
                record, rss = job.failed(task, f"{task.path}: every worker that ran it died (a poisoned file?), "
                                               f"given up after the scheduler's allowed failures: {exc}"), 0
            except Exception as exc:  # noqa: BLE001 - any task failure is that file's error line, the run goes on
                record, rss = job.failed(task, f"{task.path}: {type(exc).__name__}: {exc}"), 0
            future.release()
            submit_next()
            yield Outcome(task, record, rss, where or "failed")

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> "DaskExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def add_cluster_args(parser: Any) -> None:
    """The executor options both batch commands share."""
    group = parser.add_argument_group("many machines (the 'cluster' extra: Dask's distributed)")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=0,
                       help="run on a local Dask cluster of N worker processes that this command starts and stops "
                       "(one model thread each: see --threads)")
    where.add_argument("--scheduler", default="",
                       help="run on an existing Dask cluster: tcp://127.0.0.1:8786 on this host, tls://HOST:8786 "
                       "with certificates off it (workers need Sensorium installed and the files at the same path)")
    group.add_argument("--tls-ca-file", default="", help="CA certificate for a tls:// scheduler")
    group.add_argument("--tls-cert", default="", help="client certificate for a tls:// scheduler")
    group.add_argument("--tls-key", default="", help="client private key for a tls:// scheduler")
    group.add_argument("--file-timeout-s", type=float, default=None,
                       help="time limit per file, checked between decode chunks: a file over it is one error line "
                       "(default: none in one process, 3600 on a cluster)")
    group.add_argument("--worker-memory", default="auto",
                       help="memory limit per local worker (e.g. 4GiB; Dask pauses, then restarts a worker over it; "
                       "default: the machine's memory shared out)")
    group.add_argument("--allowed-failures", type=int, default=DEFAULT_ALLOWED_FAILURES,
                       help="worker deaths a file may cause before it is given up as an error line "
                       "(local cluster; an existing scheduler has its own setting) (default %(default)s)")


def executor_from_args(args: Any, prog: str) -> LocalExecutor | DaskExecutor:
    """The executor the options ask for; raises ClusterError with what to do (the caller prefixes ``prog``)."""
    if args.workers < 0:
        raise ClusterError(f"--workers {args.workers}: expected a positive number")
    if not args.workers and not args.scheduler:
        return LocalExecutor(args.file_timeout_s)
    timeout = args.file_timeout_s if args.file_timeout_s is not None else 3600.0
    if args.scheduler:
        why = check_scheduler_address(args.scheduler)
        if why:
            raise ClusterError(why)
        import_distributed()
        security = security_for(args.scheduler, args.tls_ca_file, args.tls_cert, args.tls_key)
        return DaskExecutor(prog, scheduler=args.scheduler, security=security, file_timeout_s=timeout)
    return DaskExecutor(prog, workers=args.workers, file_timeout_s=timeout, memory_limit=args.worker_memory,
                        allowed_failures=args.allowed_failures)
