"""Running one job on the resident pipeline: status transitions, events, uploads and the job's end.

The Celery task (worker.render_tasks) is a thin shell around `JobRunner.run`: every outcome of a job is
decided here, except storage outages, which the task retries (StorageError propagates).
"""

import io
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from PIL import Image

from jobs.errors import ErrorCode
from jobs.notify import WebhookNotifier
from jobs.records import EventType, Job, JobStatus, Keyframe, job_prefix, keyframe_key, video_key
from jobs.storage import Storage, StorageError, StorageNotFound
from jobs.store import JobStore
from model_core.errors import CheckpointError, InvalidInputError, RenderCanceled
from model_core.events import (
    KeyframeReady,
    PromptReady,
    RenderEvent,
    StageFinished,
    StageStarted,
    StepFinished,
)
from model_core.images import read_image
from model_core.pipeline import PaintsUndoPipeline
from model_core.settings import RenderSettings

log = logging.getLogger(__name__)


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


class JobRunner:
    """Runs jobs by id. Storage errors propagate (StorageError) so the task can retry the job later."""

    def __init__(
        self,
        store: JobStore,
        storage: Storage,
        notifier: WebhookNotifier,
        pipeline: Callable[[], PaintsUndoPipeline],
        max_attempts: int,
    ):
        self.store = store
        self.storage = storage
        self.notifier = notifier
        self.pipeline = pipeline
        self.max_attempts = max_attempts

    def run(self, job_id: str) -> None:
        """Run the job to its end (succeeded, failed with a code, canceled); StorageError propagates."""
        try:
            self._run(job_id)
        except StorageError:
            raise
        except Exception as err:  # a bug outside the render: the job must still end, not stay running
            log.exception("job %s: unexpected error", job_id)
            self.fail(job_id, ErrorCode.RENDER_FAILED, f"{type(err).__name__}: {err}")

    def _run(self, job_id: str) -> None:
        job = self.store.get(job_id)
        if job is None or job.status.is_terminal():
            log.info("job %s is %s; skipped", job_id, "gone" if job is None else job.status)
            return
        if job.attempts >= self.max_attempts:
            message = f"the worker running this job stopped {job.attempts} times (out of memory or killed)"
            self.fail(job_id, ErrorCode.WORKER_LOST, message)
            return
        try:
            pipeline = self.pipeline()
        except CheckpointError as err:  # this process's models failed to load
            self.fail(job_id, ErrorCode.MODEL_UNAVAILABLE, str(err))
            return
        job = self.store.start(job_id)
        if job is None:  # canceled between the two reads
            return
        log.info("job %s started (attempt %d)", job_id, job.attempts)
        self.notifier.notify(job, EventType.STARTED)
        try:
            video = self._render(job, pipeline)
        except RenderCanceled:
            self.end(job_id, JobStatus.CANCELED)
        except InvalidInputError as err:
            self.fail(job_id, ErrorCode.INVALID_INPUT, str(err))
        except SoftTimeLimitExceeded:
            self.fail(job_id, ErrorCode.TIMEOUT, "the job ran past the time limit (PAINTS_UNDO_JOB_SOFT_TIME_LIMIT)")
        except StorageNotFound as err:
            self.fail(job_id, ErrorCode.INVALID_INPUT, f"a file of this job is gone from storage: {err}")
        except StorageError:
            raise
        except Exception as err:
            log.exception("job %s failed", job_id)
            self.fail(job_id, ErrorCode.RENDER_FAILED, f"{type(err).__name__}: {err}")
        else:
            self.end(job_id, JobStatus.SUCCEEDED, video=video)
        if self.store.get(job_id) is None:  # deleted while running: drop what was uploaded since
            self.storage.delete_prefix(job_prefix(job_id))

    def _render(self, job: Job, pipeline: PaintsUndoPipeline) -> dict:
        image = read_image(io.BytesIO(self.storage.get(job.input_key)))
        settings = RenderSettings.model_validate(job.settings)
        with tempfile.TemporaryDirectory(prefix="paints-undo-") as folder:
            result = pipeline.render(
                image,
                Path(folder) / "video.mp4",
                settings,
                on_event=lambda event: self._on_event(job.id, event),
                should_cancel=lambda: self.store.cancel_requested(job.id),
            )
            self.storage.put(video_key(job.id), result.video, "video/mp4")
        return {
            "key": video_key(job.id),
            "width": result.width,
            "height": result.height,
            "frames": len(result.frames),
            "fps": result.fps,
        }

    def _on_event(self, job_id: str, event: RenderEvent) -> None:
        eta = event.eta_seconds
        progress = {"progress": repr(event.progress), "eta_seconds": "" if eta is None else repr(eta)}
        data = {"progress": event.progress, "eta_seconds": eta}
        match event:
            case StageStarted(stage=stage):
                data["stage"] = stage
                self.store.update(job_id, {**progress, "stage": stage}, EventType.STAGE_STARTED, data)
            case StageFinished(stage=stage, seconds=seconds):
                data |= {"stage": stage, "seconds": seconds}
                self.store.update(job_id, progress, EventType.STAGE_FINISHED, data)
                self.store.observe_stage_seconds(stage, seconds)
            case StepFinished(stage=stage, step=step, total=total):
                data |= {"stage": stage, "step": step, "total": total}
                self.store.update(job_id, progress, EventType.PROGRESS, data)
            case PromptReady(prompt=prompt):
                data["prompt"] = prompt
                self.store.update(job_id, {**progress, "prompt": prompt}, EventType.PROMPT, data)
            case KeyframeReady(index=index, undo_step=undo_step, image=image):
                key = keyframe_key(job_id, index)
                self.storage.put(key, png_bytes(image), "image/png")
                data |= {"index": index, "undo_step": undo_step, "key": key}
                self.store.update(job_id, progress, EventType.KEYFRAME, data, Keyframe(index, undo_step, key))
                if job := self.store.get(job_id):
                    self.notifier.notify(job, EventType.KEYFRAME)

    def end(self, job_id: str, status: JobStatus, **fields) -> None:
        job = self.store.finish(job_id, status, **fields)
        if job is not None:
            log.info("job %s %s", job_id, status)
            self.notifier.notify(job, EventType(f"job.{status}"))

    def fail(self, job_id: str, code: ErrorCode, message: str) -> None:
        self.end(job_id, JobStatus.FAILED, error={"code": str(code), "message": message})

    def fail_storage_unavailable(self, job_id: str, err: StorageError) -> None:
        self.fail(job_id, ErrorCode.STORAGE_UNAVAILABLE, f"storage unreachable: {err}")
