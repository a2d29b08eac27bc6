"""The render worker: one Celery worker per GPU, running render jobs on models it keeps resident.

    python -m worker.render_worker [extra `celery worker` options]

Prefork with one process: the main process fetches the checkpoints and supervises; the forked process
loads the models once and runs one job at a time (acks late, prefetch 1: see jobs.queue). When that
process dies mid-job, Celery puts the job back in the queue and forks a new one.
"""

import logging
import sys

from celery import Task
from celery.signals import worker_process_init

from jobs.notify import WebhookNotifier
from jobs.queue import RENDER_TASK, create_celery
from jobs.settings import RENDER_QUEUE, ServiceSettings
from jobs.storage import StorageError, open_storage
from jobs.store import JobError, JobStore, connect
from model_core.errors import CheckpointError
from model_core.pipeline import ModelSources
from worker.models import ResidentPipeline, fetch_models, load_pipeline
from worker.runner import JobRunner

log = logging.getLogger("worker.render")

# How long a worker's published state outlives its last heartbeat.
STATE_TTL_SECONDS = 60


class RenderWorker:
    """The Celery app with the render task, and this process's resident pipeline and job runner."""

    def __init__(self, settings: ServiceSettings, sources: ModelSources):
        self.settings = settings
        self.sources = sources
        self.celery = create_celery(settings)

        def render(task: Task, job_id: str) -> None:
            self.render(task, job_id)

        limits = {"soft_time_limit": settings.job_soft_time_limit, "time_limit": settings.job_time_limit}
        self.celery.task(name=RENDER_TASK, bind=True, **limits)(render)
        self.resident: ResidentPipeline | None = None
        self.runner: JobRunner | None = None

    def start_process(self, **_: object) -> None:
        """In each forked process: connect, and start loading the models in the background."""
        store = JobStore(connect(self.settings.redis_url), self.settings.retention_seconds)
        storage = open_storage(self.settings)
        self.resident = ResidentPipeline(
            lambda: load_pipeline(self.sources, self.settings),
            lambda state: store.set_worker_state(state["name"], state, STATE_TTL_SECONDS),
            model=self.settings.model,
        )
        self.resident.start()
        notifier = WebhookNotifier(self.celery, storage, self.settings)
        self.runner = JobRunner(store, storage, notifier, self.resident.get, self.settings.max_attempts)

    def render(self, task: Task, job_id: str) -> None:
        assert self.runner is not None and self.resident is not None, "start_process runs in each worker process"
        self.resident.set_state("busy")
        try:
            self.runner.run(job_id)
        except StorageError as err:
            retries = task.request.retries
            if retries + 1 >= self.settings.max_attempts:
                self.runner.fail(job_id, JobError.STORAGE_UNAVAILABLE, f"storage unreachable: {err}")
                return
            log.warning("job %s: storage unreachable (%s); retrying", job_id, err)
            self.runner.store.requeue(job_id)
            raise task.retry(countdown=min(300, 10 * 2**retries), exc=err) from err
        except CheckpointError as err:  # this process's models failed to load
            self.runner.fail(job_id, JobError.MODEL_UNAVAILABLE, str(err))
        except Exception as err:  # a bug outside the render: the job must still end, not stay queued
            log.exception("job %s: unexpected error", job_id)
            self.runner.fail(job_id, JobError.RENDER_FAILED, f"{type(err).__name__}: {err}")
        finally:
            self.resident.set_state("ready")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ServiceSettings()
    try:
        connect(settings.redis_url).ping()
    except Exception as err:
        sys.exit(f"Redis at {settings.redis_url} is unreachable ({err}). Start it or set PAINTS_UNDO_REDIS_URL.")
    try:
        sources = fetch_models(settings)
    except CheckpointError as err:
        sys.exit(f"cannot start the render worker: {err}")
    worker = RenderWorker(settings, sources)
    worker_process_init.connect(worker.start_process, weak=False)
    options = ["--pool=prefork", "--concurrency=1", f"--queues={RENDER_QUEUE}", "--hostname=render@%h"]
    worker.celery.worker_main(["worker", "--loglevel=INFO", "--without-gossip", "--without-mingle", *options, *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
