"""The retention sweep under real processes: the scheduler (Celery beat) sends it, the webhook worker runs it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from services import start_redis_server

from jobs.records import Job, JobStatus, input_key, new_job_id, video_key
from jobs.settings import ServiceSettings
from jobs.storage import StorageNotFound, open_storage
from jobs.store import JobStore, connect


def launch(module: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def gone(store: JobStore, storage, job_id: str) -> bool:
    if store.get(job_id) is not None:
        return False
    try:
        storage.get(video_key(job_id, 1))
    except StorageNotFound:
        return True
    return False


def test_the_scheduler_has_finished_jobs_past_retention_deleted(tmp_path: Path) -> None:
    with start_redis_server() as redis_url:
        settings = ServiceSettings(redis_url=redis_url, storage_url=f"file://{tmp_path / 'data'}", retention_seconds=1)
        store, storage = JobStore(connect(redis_url), settings.retention_seconds), open_storage(settings)
        ids = {}
        for status in (JobStatus.SUCCEEDED, JobStatus.RUNNING):
            job_id = new_job_id(time.time())
            store.create(Job(job_id, "owner", JobStatus.QUEUED, {}, input_key(job_id), time.time()), max_active=9)
            storage.put(video_key(job_id, 1), b"video", "video/mp4")
            store.start(job_id, 60)
            if status.is_terminal():
                store.finish(job_id, status)
            ids[status] = job_id

        env = {
            **os.environ,
            "PAINTS_UNDO_REDIS_URL": redis_url,
            "PAINTS_UNDO_STORAGE_URL": settings.storage_url,
            "PAINTS_UNDO_RETENTION_SECONDS": "1",
            "PAINTS_UNDO_SWEEP_INTERVAL_SECONDS": "0.5",
            "PAINTS_UNDO_SCHEDULE_FILE": str(tmp_path / "beat-schedule"),
        }
        processes = [
            launch(module, env, tmp_path / f"{module}.log") for module in ("worker.scheduler", "worker.webhook_worker")
        ]
        try:
            deadline = time.monotonic() + 120  # generous: both processes start on a busy machine first
            while not gone(store, storage, ids[JobStatus.SUCCEEDED]):
                assert all(process.poll() is None for process in processes), "a process exited; see its log"
                assert time.monotonic() < deadline, "the finished job was not deleted within 120 s"
                time.sleep(0.2)
        finally:
            for process in processes:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)
        logs = {path.name: path.read_text() for path in tmp_path.glob("*.log")}
        assert "Scheduler: Sending due task sweep-expired-jobs" in logs["worker.scheduler.log"]
        # A running job is never swept, however old.
        assert store.get(ids[JobStatus.RUNNING]) is not None
        assert storage.get(video_key(ids[JobStatus.RUNNING], 1)) == b"video"
