"""Compression as a background job: one worker thread, status kept in memory.

Jobs are not persisted: a controller restart forgets queued and running jobs (the registered
results stay in the model registry).  One worker, because a search saturates the CPU and its
latency figures are only meaningful when nothing else runs beside it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("edgefleet.controller.compression")


@dataclass
class Job:
    id: str
    request: dict[str, Any]
    status: str = "queued"  # queued | running | succeeded | failed
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    report: list[dict[str, Any]] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in (
                "id",
                "request",
                "status",
                "created_at",
                "started_at",
                "finished_at",
                "progress",
                "result",
                "error",
                "report",
            )
        }


class JobRunner:
    def __init__(self, workers: int = 1) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="compress")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(self, request: dict[str, Any], work: Callable[[Job, Path], dict[str, Any]]) -> Job:
        job = Job(uuid.uuid4().hex[:16], request)
        with self._lock:
            self._jobs[job.id] = job
        self._pool.submit(self._run, job, work)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def list(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)

    def _run(self, job: Job, work: Callable[[Job, Path], dict[str, Any]]) -> None:
        from controller.compression.errors import CompressionError, CompressionFailed

        job.status, job.started_at = "running", time.time()
        tmp = Path(tempfile.mkdtemp(prefix=f"edgefleet-job-{job.id}-"))
        try:
            job.result = work(job, tmp)
            job.status = "succeeded"
        except CompressionFailed as e:
            job.status, job.error, job.report = "failed", str(e).splitlines()[0], e.report
        except CompressionError as e:
            job.status, job.error = "failed", f"{type(e).__name__}: {e}"
        except Exception as e:  # the job must end in a state the API can report
            log.exception("compression job %s crashed", job.id)
            job.status, job.error = "failed", f"{type(e).__name__}: {e}"
        finally:
            job.finished_at = time.time()
            shutil.rmtree(tmp, ignore_errors=True)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
