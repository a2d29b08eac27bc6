"""The render task: a thin shell around `JobRunner.run` on the models this process keeps resident.

`RenderTask` is the task base (Celery's "Instantiation" pattern): each worker process builds its job
runner and starts loading the models once, at process start (`worker_process_init`), and keeps them.
`RenderRequest` runs in the worker's main process, which outlives the pool process running the job:
it ends a job whose process was killed at the hard time limit, and frees the lease of one whose process
died, so that the redelivered message starts it again at once.
"""

import logging

from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from celery import Task
from celery.worker.request import Request

from jobs.errors import ErrorCode
from jobs.notify import WebhookNotifier
from jobs.queue import RENDER_TASK, TaskQueue
from jobs.records import EventType, JobStatus
from jobs.settings import ServiceSettings
from jobs.storage import StorageError, open_storage
from jobs.store import open_store
from model_core.pipeline import ModelSources
from model_core.sources import model_ids
from worker.app import app
from worker.models import ResidentPipeline, load_credentials, load_pipeline
from worker.runner import JobRunner

log = logging.getLogger("worker.render")

# How long a worker's published state outlives its last heartbeat.
STATE_TTL_SECONDS = 60


class RenderRequest(Request):
    """A render message as the worker's main process sees it (it survives the pool process's death)."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        super().on_timeout(soft, timeout)
        if soft:
            return  # raised inside the task (SoftTimeLimitExceeded): the runner ends the job
        job_id = self.args[0]
        settings = RenderTask.settings
        store = open_store(settings)
        message = f"the job ran past the hard time limit (PAINTS_UNDO_JOB_TIME_LIMIT, {timeout:.0f} s) and was killed"
        job = store.finish(job_id, JobStatus.FAILED, error={"code": ErrorCode.TIMEOUT, "message": message})
        if job is not None:
            log.error("job %s: killed at the hard time limit; failed", job_id)
            queue = TaskQueue(self.task.app)
            WebhookNotifier(queue, open_storage(settings), settings.url_expiry_seconds).notify(job, EventType.FAILED)

    def on_failure(self, exc_info, send_failed_event: bool = True, return_ok: bool = False) -> None:
        error = exc_info.exception
        if isinstance(error, ExceptionWithTraceback):  # how the pool hands over a dead process's error
            error = error.exc
        if isinstance(error, WorkerLostError):
            # The process died mid-job (killed, out of memory): its lease goes now, so the message that
            # Celery puts back starts the job again without waiting for the lease to run out.
            settings = RenderTask.settings
            open_store(settings).release(self.args[0])
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)


class RenderTask(Task):
    Request = RenderRequest
    # Set by the render worker's main process before it forks (python -m worker.render_worker).
    settings: ServiceSettings
    sources: ModelSources
    _runner: JobRunner | None = None
    _resident: ResidentPipeline | None = None

    def start(self) -> None:
        """Once per worker process: connect, and start loading the models in the background."""
        settings = self.settings
        store = open_store(settings)
        storage = open_storage(settings)
        self._resident = ResidentPipeline(
            lambda: load_pipeline(self.sources, settings),
            lambda state: store.set_worker_state(state["name"], state, STATE_TTL_SECONDS),
            model=settings.model,
        )
        self._resident.start()
        notifier = WebhookNotifier(TaskQueue(self.app), storage, settings.url_expiry_seconds)
        self._runner = JobRunner(
            store,
            storage,
            notifier,
            self._resident.get,
            settings.max_attempts,
            settings.lease_seconds,
            models=model_ids(settings.model, tagger=settings.tagger),
            credentials=load_credentials(settings),  # checked by the main process before it forked
        )

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
    """Run one job. Storage unreachable: the job is back in the queue, and retried here with backoff."""
    task.resident.set_state("busy")
    try:
        task.runner.run(job_id)
    except StorageError as err:
        retries = task.request.retries
        if retries + 1 >= task.settings.max_attempts:
            task.runner.fail(job_id, ErrorCode.STORAGE_UNAVAILABLE, f"storage unreachable: {err}")
            return
        log.warning("job %s: storage unreachable (%s); retrying", job_id, err)
        raise task.retry(countdown=min(300, 10 * 2**retries), exc=err) from err
    finally:
        task.resident.set_state("ready")
