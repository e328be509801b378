"""Run jobs that depend on each other on ``N`` worker processes, longest remaining chain first, one log per job.

Used by ``kd-suite demo``: every training run (a teacher, a baseline or a KD student of one seed) is a job, a KD run
waits for its teacher, and a task's summary waits for all of its runs. On a 2-core machine one training process (one
compute thread and one data worker) leaves the second core idle, so two workers pulling runs from one queue finish
in about half the sum of the run times. The next job a free worker gets is the ready one with the longest chain of
expected seconds behind it (itself plus its longest line of dependents), so a teacher that gates long KD runs starts
first. Workers are fresh ``spawn`` processes that live for the whole schedule (the imports are paid once per worker);
every run seeds itself, so its result does not depend on the worker or on what ran before it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any


@dataclass
class Job:
    """One unit of work: a module-level function and its keyword arguments (both picklable).

    Attributes:
        key: unique name, e.g. ``"pose/teacher/seed0"``; ``after`` refers to jobs by it.
        fn: the function a worker calls with ``kwargs``; its return value becomes ``result``.
        log: file that receives everything the job prints (Python and C level, stdout and stderr).
        after: keys of the jobs that must finish first (a failed one skips this job).
        cost: expected seconds, for the order and the time-left estimate.
        pass_results: call ``fn`` with ``results={key: result}`` of the jobs in ``after`` as an extra argument.
    """

    key: str
    fn: Callable[..., Any]
    kwargs: dict[str, Any]
    log: Path
    after: tuple[str, ...] = ()
    cost: float = 1.0
    pass_results: bool = False
    result: Any = None
    error: str | None = None
    seconds: float = 0.0


def run_jobs(jobs: list[Job], workers: int, threads: int = 1, say: Callable[[str], None] = print) -> dict[str, Job]:
    """Run ``jobs`` respecting ``after``; ``workers`` processes (0: one after another in this process).

    Each start and end is reported through ``say``; a failed job's log tail is printed and its dependents are
    skipped (``error`` says why), the others still run. Returns the jobs by key, with ``result``/``error``/``seconds``.
    """
    by_key = {j.key: j for j in jobs}
    unknown = [(j.key, a) for j in jobs for a in j.after if a not in by_key]
    if unknown:
        raise ValueError(f"jobs depend on unknown keys: {unknown}")
    dependents: dict[str, list[str]] = {k: [] for k in by_key}
    for j in jobs:
        for a in j.after:
            dependents[a].append(j.key)

    @cache
    def chain(key: str) -> float:  # expected seconds from this job's start to the end of its longest dependent line
        return by_key[key].cost + max((chain(d) for d in dependents[key]), default=0.0)

    pending, done, t0 = dict(by_key), {}, time.perf_counter()

    def ready() -> list[Job]:
        return sorted((j for j in pending.values() if all(a in done for a in j.after)), key=lambda j: -chain(j.key))

    def arguments(job: Job) -> dict[str, Any]:
        return job.kwargs | ({"results": {a: by_key[a].result for a in job.after}} if job.pass_results else {})

    def finish(job: Job) -> None:
        done[job.key] = job
        if job.error is None:
            ahead = sum(j.cost for j in pending.values()) / max(1, workers)
            say(f"[demo] {job.key}: done in {job.seconds:.0f} s ({len(done)}/{len(by_key)}; ~{_minutes(ahead)} left)")
            return
        tail = job.log.read_text(errors="replace").splitlines()[-25:] if job.log.is_file() else []
        say(f"[demo] {job.key}: FAILED after {job.seconds:.0f} s ({job.error}); log: {job.log}")
        print("\n".join(f"  | {line}" for line in tail), file=sys.stderr, flush=True)
        for key in _descendants(job.key, dependents):
            if key in pending:
                skipped = pending.pop(key)
                skipped.error = f"skipped: {job.key} failed"
                done[key] = skipped

    if workers <= 0:
        while pending:
            job = pending.pop(ready()[0].key)
            say(f"[demo] {job.key}: started (log: {job.log})")
            job.result, job.error, job.seconds = _call(job.fn, arguments(job), job.log, threads)
            finish(job)
        return by_key
    context, running = multiprocessing.get_context("spawn"), {}
    init = (multiprocessing.get_start_method(),)  # the workers' own DataLoaders start processes the usual way
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=init) as pool:
        try:
            while pending or running:
                for job in ready()[: workers - len(running)]:
                    pending.pop(job.key)
                    running[pool.submit(_call, job.fn, arguments(job), job.log, threads)] = job
                    say(f"[demo] {job.key}: started (log: {job.log})")
                if not running:  # everything left waits on a failed job
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    job = running.pop(future)
                    try:
                        job.result, job.error, job.seconds = future.result()
                    except Exception as err:  # the worker process itself died (killed, out of memory)
                        job.error, job.seconds = f"worker died: {err}", time.perf_counter() - t0
                    finish(job)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return by_key


def _init_worker(start_method: str) -> None:
    """A spawned worker would spawn its DataLoader workers too (a fresh interpreter and imports per loader)."""
    multiprocessing.set_start_method(start_method, force=True)


def _call(fn: Callable[..., Any], kwargs: dict[str, Any], log: Path, threads: int) -> tuple[Any, str | None, float]:
    """Run ``fn(**kwargs)`` with all output going to ``log``; returns ``(result, error or None, seconds)``."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with log.open("a") as handle, _redirected(handle):
        try:
            return fn(**kwargs), None, time.perf_counter() - t0
        except Exception as err:
            traceback.print_exc()
            return None, f"{type(err).__name__}: {err}".splitlines()[0][:300], time.perf_counter() - t0


@contextlib.contextmanager
def _redirected(handle: Any):
    """Point file descriptors 1 and 2 and ``sys.stdout``/``sys.stderr`` at ``handle`` (restored on exit)."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    os.dup2(handle.fileno(), 1), os.dup2(handle.fileno(), 2)
    try:
        with contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
            yield
    finally:
        handle.flush()
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _descendants(key: str, dependents: dict[str, list[str]]) -> list[str]:
    out, stack = [], list(dependents[key])
    while stack:
        k = stack.pop()
        if k not in out:
            out.append(k)
            stack.extend(dependents[k])
    return out


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
