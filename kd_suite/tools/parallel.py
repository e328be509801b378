"""Run independent jobs as child processes, ``N`` at a time, each logging to its own file.

Used by ``kd-suite demo --parallel N``: on a 2-core machine one training process (one compute thread and one data
worker) leaves much of the second core idle, so two jobs side by side finish in far less than the sum of their
times. Every job is seeded and single-threaded, so its results do not depend on what runs beside it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Job:
    """One child process: its name, its command line and the file its output goes to."""

    name: str
    argv: list[str]
    log: Path
    seconds: float = 0.0
    returncode: int | None = None


def run_jobs(jobs: list[Job], parallel: int, poll: float = 0.5) -> list[Job]:
    """Run ``jobs`` (in the given order) with at most ``parallel`` at once; returns them with exit codes and times.

    Each start and end is printed with the log's path; on failure the log's last lines are printed too.
    """
    pending, running = list(jobs), []
    while pending or running:
        while pending and len(running) < max(1, parallel):
            job = pending.pop(0)
            job.log.parent.mkdir(parents=True, exist_ok=True)
            handle = job.log.open("w")
            process = subprocess.Popen(job.argv, stdout=handle, stderr=subprocess.STDOUT)
            running.append((job, process, handle, time.perf_counter()))
            print(f"[demo] {job.name}: started (log: {job.log})", flush=True)
        time.sleep(poll)
        for entry in list(running):
            job, process, handle, t0 = entry
            if process.poll() is None:
                continue
            handle.close()
            running.remove(entry)
            job.returncode, job.seconds = process.returncode, time.perf_counter() - t0
            status = "done" if job.returncode == 0 else f"FAILED (exit {job.returncode})"
            print(f"[demo] {job.name}: {status} in {job.seconds:.0f} s", flush=True)
            if job.returncode != 0:
                tail = job.log.read_text(errors="replace").splitlines()[-25:]
                print("\n".join(f"  | {line}" for line in tail), file=sys.stderr, flush=True)
    return jobs
