"""The render task: a thin shell around `JobRunner.run` on the models this process keeps resident.

`RenderTask` is the task base (Celery's "Instantiation" pattern): each worker process builds its job
runner and starts loading the models once, at process start (`worker_process_init`), and keeps them.
"""

import logging

from celery import Task

from jobs.notify import WebhookNotifier
from jobs.queue import RENDER_TASK, TaskQueue
from jobs.settings import ServiceSettings
from jobs.storage import StorageError, open_storage
from jobs.store import JobStore, connect
from model_core.pipeline import ModelSources
from worker.app import app
from worker.models import ResidentPipeline, load_pipeline
from worker.runner import JobRunner

log = logging.getLogger("worker.render")

# How long a worker's published state outlives its last heartbeat.
STATE_TTL_SECONDS = 60


class RenderTask(Task):
    # Set by the render worker's main process before it forks (python -m worker.render_worker).
    settings: ServiceSettings
    sources: ModelSources
    _runner: JobRunner | None = None
    _resident: ResidentPipeline | None = None

    def start(self) -> None:
        """Once per worker process: connect, and start loading the models in the background."""
        settings = self.settings
        store = JobStore(connect(settings.redis_url), settings.retention_seconds)
        storage = open_storage(settings)
        self._resident = ResidentPipeline(
            lambda: load_pipeline(self.sources, settings),
            lambda state: store.set_worker_state(state["name"], state, STATE_TTL_SECONDS),
            model=settings.model,
        )
        self._resident.start()
        notifier = WebhookNotifier(TaskQueue(self.app), storage, settings.url_expiry_seconds)
        self._runner = JobRunner(store, storage, notifier, self._resident.get, settings.max_attempts)

    @property
    def runner(self) -> JobRunner:
        if self._runner is None:
            self.start()
        assert self._runner is not None
        return self._runner

    @property
    def resident(self) -> ResidentPipeline:
        if self._resident is None:
            self.start()
        assert self._resident is not None
        return self._resident


@app.task(bind=True, base=RenderTask, name=RENDER_TASK)
def render(task: RenderTask, job_id: str) -> None:
    """Run one job. Storage unreachable: the job goes back to the queue and is retried with backoff."""
    task.resident.set_state("busy")
    try:
        task.runner.run(job_id)
    except StorageError as err:
        retries = task.request.retries
        if retries + 1 >= task.settings.max_attempts:
            task.runner.fail_storage_unavailable(job_id, err)
            return
        log.warning("job %s: storage unreachable (%s); retrying", job_id, err)
        task.runner.store.requeue(job_id)
        raise task.retry(countdown=min(300, 10 * 2**retries), exc=err) from err
    finally:
        task.resident.set_state("ready")
