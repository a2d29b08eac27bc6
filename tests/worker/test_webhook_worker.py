"""The retention sweep's deletion, on a private Redis and folder storage (tests/e2e runs it under a real beat)."""

import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from services import start_redis_server

from jobs.records import Job, JobStatus, input_key, new_job_id, video_key
from jobs.settings import ServiceSettings
from jobs.storage import Storage, open_storage
from jobs.store import JobStore, connect
from worker.webhook_tasks import delete_expired


@dataclass
class Worker:
    store: JobStore
    storage: Storage

    def sweep_expired(self) -> int:
        return delete_expired(self.store, self.storage)


@pytest.fixture
def worker(tmp_path: Path):
    with start_redis_server() as redis_url:
        settings = ServiceSettings(redis_url=redis_url, storage_url=f"file://{tmp_path}", retention_seconds=1)
        yield Worker(JobStore(connect(redis_url), settings.retention_seconds), open_storage(settings))


def make_job(worker: Worker, status: JobStatus) -> str:
    job_id = new_job_id(time.time())
    job = Job(id=job_id, owner="o", status=JobStatus.QUEUED, settings={}, input_key=input_key(job_id), created_at=0)
    worker.store.create(job, max_active=100)
    worker.storage.put(job.input_key, b"picture", "image/png")
    worker.storage.put(video_key(job_id, 1), b"video", "video/mp4")
    if status != JobStatus.QUEUED:
        worker.store.start(job_id, 60)
        if status.is_terminal():
            worker.store.finish(job_id, status)
    return job_id


def test_sweep_deletes_finished_jobs_past_retention_and_their_files(worker: Worker, tmp_path: Path) -> None:
    finished = [make_job(worker, status) for status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)]
    unfinished = [make_job(worker, JobStatus.QUEUED), make_job(worker, JobStatus.RUNNING)]
    assert worker.sweep_expired() == 0  # retention (1 s) not over yet
    time.sleep(1.2)

    assert worker.sweep_expired() == 3
    for job_id in finished:
        assert worker.store.get(job_id) is None
        assert [path for path in (tmp_path / "jobs" / job_id).rglob("*") if path.is_file()] == []
    for job_id in unfinished:  # queued and running jobs never expire
        assert worker.store.get(job_id) is not None
        assert worker.storage.get(video_key(job_id, 1)) == b"video"
    assert worker.sweep_expired() == 0
