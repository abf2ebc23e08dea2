"""Jobs: anything longer than about a second runs on one worker thread that owns the models.

One worker means one thread ever runs a model, so a page's quick call and a long job never race
(the model's own lock in :mod:`convscope.model.guard` would serialize them anyway, but a single
queue also keeps their order fair and their progress visible). A job is a function
``fn(progress) -> JobResult``; ``progress(done, total)`` is the task's ``ProgressFn``.

Cancelling sets an event: ``progress`` raises ``Cancelled`` at the next call, and the job runs
inside :func:`~convscope.model.cancel.cancellable`, which raises at the next torch operation (or
module call, for jobs that only run the model), so a cancel lands mid-forward too. Both unwind
through the methods' ``finally`` blocks: the model comes out unharmed, as from any failure.

With a ``key``, a finished result goes to the disk cache; the same key later is answered at once
(and while a job with that key is queued or running, submitting it again returns that job).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from ..errors import ConvscopeError
from ..model.cancel import Cancelled, at_rest, cancellable
from ..types import ProgressFn
from .cache import DiskCache, JobResult
from .errors import NotFound, one_line

Status = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED = ("done", "failed", "cancelled")
T = TypeVar("T")
log = logging.getLogger("convscope.web")
_FIRST, _LATER = 0, 1
"""Queue priorities: pages' short calls (``run``) first, then jobs in the order submitted."""
_KEEP = 1000
"""Finished jobs remembered (their cached results stay on disk regardless)."""


@dataclass
class Job:
    id: str
    kind: str
    title: str
    fn: Callable[[ProgressFn], Any] | None
    key: str | None = None
    hidden: bool = False
    status: Status = "queued"
    done: int = 0
    total: int = 0
    message: str = ""
    error: str | None = None
    exception: ConvscopeError | None = None
    result: Any = None
    started: float | None = None
    finished: float | None = None
    version: int = 0
    per_module: bool = False
    """The cancel check runs before each module call, not each torch call
    (:func:`~convscope.model.cancel.cancellable`): for jobs that only run the model."""
    between_steps_on: Any = None
    """A short call's model: the call may run between two steps of a running job while that
    model is at rest (:func:`~convscope.model.cancel.at_rest`)."""
    cancel_event: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def finished_(self) -> bool:
        return self.status in FINISHED

    def update(self, **fields: Any) -> None:
        with self.changed:
            for name, value in fields.items():
                setattr(self, name, value)
            self.version += 1
            if self.finished_:  # the only change a waiter waits for (streams read ``version``):
                self.changed.notify_all()  # no thread woken, and GIL handed over, mid-job

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (``False`` on timeout)."""
        with self.changed:
            return self.changed.wait_for(lambda: self.finished_, timeout)

    def as_json(self) -> dict[str, Any]:
        result = self.result if isinstance(self.result, JobResult) else None
        files = f"/api/results/{self.key}" if self.key else f"/api/jobs/{self.id}/files"
        return {
            "id": self.id, "kind": self.kind, "title": self.title, "status": self.status,
            "done": self.done, "total": self.total, "message": self.message, "error": self.error,
            "key": self.key,
            "seconds": round((self.finished or time.time()) - self.started, 3) if self.started else None,
            "data": result.data if result else None,
            "files": {n: f"{files}/{n}" for n in sorted(result.files)} if result else {},
        }


class JobManager:
    """A queue of jobs and the one worker thread that runs them."""

    def __init__(self, cache: DiskCache) -> None:
        self.cache = cache
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._by_key: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.PriorityQueue[tuple[int, int, Job | None]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._ids = itertools.count(1)
        self._prefix = format(int(time.time() * 1000) % 0xFFFFFF, "x")
        self._worker = threading.Thread(target=self._work, name="convscope-worker", daemon=True)
        self._worker.start()

    # -- submitting --------------------------------------------------------------------------
    def submit(self, kind: str, title: str, fn: Callable[[ProgressFn], JobResult], *,
               key: str | None = None, per_module: bool = False) -> Job:
        """Queue ``fn``; with ``key``, a cached or in-flight result with that key is reused.
        ``per_module``: ``fn`` only runs the model, so a cancel is checked at each module call."""
        with self._lock:
            if key is not None:
                running = self._by_key.get(key)
                if running is not None and running.status in ("queued", "running"):
                    return running
                cached = self.cache.get(key)
                if cached is not None:
                    now = time.time()
                    job = Job(self._new_id(), kind, title, None, key=key, status="done", result=cached,
                              started=now, finished=now, message="cached")
                    self._remember(job)
                    return job
            job = Job(self._new_id(), kind, title, fn, key=key, per_module=per_module)
            self._remember(job)
            if key is not None:
                self._by_key[key] = job
        self._put(job, _LATER)
        return job

    def run(self, fn: Callable[[], T], timeout: float | None = None, *, model: Any = None) -> T:
        """Run a short call on the worker and return its value (its ConvscopeError is raised here).
        With ``model`` (the one module the call uses), the call does not wait for the end of a
        running job: the worker runs it between two of the job's steps, once the model is at rest."""
        job = Job(self._new_id(), "call", getattr(fn, "__name__", "call"), lambda progress: fn(),
                  hidden=True, between_steps_on=model)
        with self._lock:
            self._remember(job)
        self._put(job, _FIRST)  # a page's quick call goes before queued jobs, not behind them
        if not job.wait(timeout):
            self.cancel(job.id)
            raise ConvscopeError("the server is busy; try again when the running jobs have finished")
        return self.value(job)

    def value(self, job: Job) -> Any:
        """A finished job's result; its user error is raised again (the handler turns it into a 4xx)."""
        if job.status == "done":
            return job.result
        if job.exception is not None:
            raise job.exception
        if job.status == "cancelled":
            raise ConvscopeError(f"job {job.id} was cancelled")
        raise ConvscopeError(job.error or f"job {job.id} failed")

    # -- looking up and cancelling -----------------------------------------------------------
    def get(self, job_id: str) -> Job:
        with self._lock:
            return self._find(job_id)

    def list(self) -> list[Job]:
        with self._lock:
            return [j for j in reversed(self._jobs.values()) if not j.hidden]

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: a queued one ends at once, a running one at its next torch call. Under
        the lock the worker takes to start a job, so the two never act on a stale status."""
        with self._lock:
            job = self._find(job_id)
            if not job.finished_:
                job.cancel_event.set()
                if job.status == "queued":  # the worker skips it when it gets there
                    self._end_unstarted(job)
        return job

    def close(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel_event.set()
        self._put(None, _FIRST)
        self._worker.join(timeout=10)

    # -- the worker --------------------------------------------------------------------------
    def _find(self, job_id: str) -> Job:
        """The job ``job_id`` (the caller holds the lock); unknown ids are a 404."""
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r} (jobs are forgotten when the server restarts)")
        return job

    def _new_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    def _remember(self, job: Job) -> None:
        """Add a job to the table (the caller holds the lock, as every reader of the table does)."""
        self._jobs[job.id] = job
        while len(self._jobs) > _KEEP:
            oldest = next(iter(self._jobs.values()))
            if not oldest.finished_:
                break
            self._jobs.popitem(last=False)

    def _put(self, job: Job | None, priority: int) -> None:
        self._queue.put((priority, next(self._order), job))

    def _work(self) -> None:
        while True:
            _, _, job = self._queue.get()
            if job is None:
                return
            self._run(job)

    def _end_unstarted(self, job: Job) -> None:
        """Cancelled before it started (the caller holds the lock)."""
        job.update(status="cancelled", message="cancelled before it started", finished=time.time())
        self._forget_key(job)

    def _run(self, job: Job) -> None:
        with self._lock:  # a cancel either ends it here, or lands on a running job
            if job.finished_:  # cancelled while queued
                return
            if job.cancel_event.is_set():
                self._end_unstarted(job)
                return
            job.update(status="running", started=time.time(), message="running")

        def progress(done: int, total: int) -> None:
            if job.cancel_event.is_set():
                raise Cancelled("cancelled")
            job.update(done=int(done), total=int(total))
            self._calls_between_steps()

        assert job.fn is not None
        try:
            with cancellable(job.cancel_event, per_module=job.per_module):
                result = job.fn(progress)
            if job.key is not None and isinstance(result, JobResult):
                self.cache.put(job.key, result)
            job.update(status="done", result=result, message="done", finished=time.time())
        except Cancelled:
            job.update(status="cancelled", message="cancelled", finished=time.time())
        except ConvscopeError as err:
            job.update(status="failed", error=one_line(str(err)), exception=err, message="failed",
                       finished=time.time())
        except Exception as err:  # a bug, not the user's fault: logged with its traceback
            log.exception("job %s (%s) failed", job.id, job.kind)
            job.update(status="failed", error=one_line(f"internal error ({type(err).__name__}: {err})"),
                       message="failed", finished=time.time())
        finally:
            job.fn = job.between_steps_on = None  # free what the closure holds
            with self._lock:
                self._forget_key(job)

    def _calls_between_steps(self) -> None:
        """Run the pages' short calls at the head of the queue now, between two steps of the
        running job, while the model each one uses is at rest; the first that cannot run yet
        (its model carries the job's hooks) waits, and the ones behind it with it."""
        while True:
            with self._queue.mutex:  # only this thread takes from the queue: the head stays the head
                head = self._queue.queue[0] if self._queue.queue else None
            call = head[2] if head is not None and head[0] == _FIRST else None
            if call is None or call.between_steps_on is None or not at_rest(call.between_steps_on):
                return
            self._queue.get_nowait()
            self._run(call)

    def _forget_key(self, job: Job) -> None:
        """The key no longer names this job in flight (the caller holds the lock)."""
        if job.key is not None and self._by_key.get(job.key) is job:
            del self._by_key[job.key]
