"""Running one job on the resident pipeline: status transitions, events, uploads and the job's end.

The Celery task (worker.render_tasks) is a thin shell around `JobRunner.run`: every outcome of a job is
decided here, except storage outages, which the task retries (StorageError propagates). Each attempt
holds the job's lease (a fencing token) and renews it while it runs; every write it makes is fenced by it.
"""

import io
import logging
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from jobs.errors import ErrorCode
from jobs.notify import WebhookNotifier
from jobs.records import EventType, Job, JobStatus, Keyframe, job_prefix, keyframe_key, output_key
from jobs.storage import Storage, StorageError, StorageNotFound
from jobs.store import JobStore
from model_core.credentials import ContentCredentials
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
from model_core.outputs import OUTPUT_FILES, write_outputs
from model_core.pipeline import PaintsUndoPipeline, RenderResult
from model_core.provenance import Provenance, source_picture
from model_core.settings import RenderSettings
from model_core.video import MP4_MEDIA_TYPE

log = logging.getLogger(__name__)

MEDIA_TYPES = {"video": MP4_MEDIA_TYPE, **{kind: media_type for kind, (_, media_type) in OUTPUT_FILES.items()}}


class LeaseKeeper:
    """Renews a running job's lease from a thread while the job runs, so the reaper knows this worker lives.

    `lost` turns True once the store refuses a renewal (the job was reaped and runs elsewhere, or ended):
    the render then stops at its next step, and its late writes are refused by the store anyway.
    """

    def __init__(self, store: JobStore, job_id: str, lease: int, lease_seconds: float):
        self.store, self.job_id, self.lease, self.lease_seconds = store, job_id, lease, lease_seconds
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_seconds / 4):
            try:
                if not self.store.renew(self.job_id, self.lease, self.lease_seconds):
                    log.warning("job %s: lease %d is no longer this worker's; stopping", self.job_id, self.lease)
                    self.lost = True
                    return
            except Exception:  # a Redis hiccup: the next renewal may get through before the lease runs out
                log.warning("job %s: could not renew the lease", self.job_id, exc_info=True)


class JobRunner:
    """Runs jobs by id. On a storage outage the job goes back to the queue and StorageError propagates, so the
    task can retry it later.

    models: how the files a job makes name the models (`model_core.sources.model_ids`).
    credentials: signs every video, preview and keyframe with a C2PA manifest; None signs nothing.
    """

    def __init__(
        self,
        store: JobStore,
        storage: Storage,
        notifier: WebhookNotifier,
        pipeline: Callable[[], PaintsUndoPipeline],
        max_attempts: int,
        lease_seconds: float,
        *,
        models: tuple[str, ...] = (),
        credentials: ContentCredentials | None = None,
    ):
        self.store = store
        self.storage = storage
        self.notifier = notifier
        self.pipeline = pipeline
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self.models = models
        self.credentials = credentials

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
        job = self.store.start(job_id, self.lease_seconds)
        if job is None:  # canceled since, or running under a live lease elsewhere (a duplicate message)
            log.info("job %s is not startable (ended, or running elsewhere); skipped", job_id)
            return
        log.info("job %s started (attempt %d, lease %d)", job_id, job.attempts, job.lease)
        self.notifier.notify(job, EventType.STARTED)
        with LeaseKeeper(self.store, job_id, job.lease, self.lease_seconds) as keeper:
            self._attempt(job, pipeline, keeper)
        if self.store.get(job_id) is None:  # deleted while running: drop what was uploaded since
            self.storage.delete_prefix(job_prefix(job_id))

    def _attempt(self, job: Job, pipeline: PaintsUndoPipeline, keeper: LeaseKeeper) -> None:
        """One attempt under the job's lease: every outcome is written fenced by that lease."""
        lease = job.lease
        try:
            files = self._render(job, pipeline, keeper)
        except RenderCanceled:
            self.end(job.id, JobStatus.CANCELED, lease=lease)
        except InvalidInputError as err:
            self.fail(job.id, ErrorCode.INVALID_INPUT, str(err), lease=lease)
        except SoftTimeLimitExceeded:
            message = "the job ran past the time limit (PAINTS_UNDO_JOB_SOFT_TIME_LIMIT)"
            self.fail(job.id, ErrorCode.TIMEOUT, message, lease=lease)
        except StorageNotFound as err:
            self.fail(job.id, ErrorCode.INVALID_INPUT, f"a file of this job is gone from storage: {err}", lease=lease)
        except StorageError:
            self.store.requeue(job.id, lease)  # the task sends it again later
            raise
        except Exception as err:
            log.exception("job %s failed", job.id)
            self.fail(job.id, ErrorCode.RENDER_FAILED, f"{type(err).__name__}: {err}", lease=lease)
        else:
            self.end(job.id, JobStatus.SUCCEEDED, lease=lease, **files)

    def _render(self, job: Job, pipeline: PaintsUndoPipeline, keeper: LeaseKeeper) -> dict[str, Any]:
        """Render the job and upload what it made; returns the record's `video` and `outputs` (none when the
        settings stop after the keyframes)."""
        picture = self.storage.get(job.input_key)
        image = read_image(io.BytesIO(picture))
        supplied = [read_image(io.BytesIO(self.storage.get(key))) for key in job.supplied_keyframes]
        settings = RenderSettings.model_validate(job.settings)
        provenance = Provenance(source_picture(picture), self.models, self.credentials)
        prompt = settings.prompt or ""

        def on_event(event: RenderEvent) -> None:
            nonlocal prompt
            if isinstance(event, PromptReady):
                prompt = event.prompt
            keyframe_png = None
            if isinstance(event, KeyframeReady):
                keyframe_png = provenance.keyframe_png(event.image, settings, prompt, event.undo_step)
            self._on_event(job, event, keyframe_png)

        with tempfile.TemporaryDirectory(prefix="paints-undo-") as folder:
            result = pipeline.render(
                image,
                None if settings.stop_after == "keyframes" else Path(folder) / "video.mp4",
                settings,
                keyframes=supplied or None,
                on_event=on_event,
                should_cancel=lambda: keeper.lost or self.store.cancel_requested(job.id),
            )
            if result.video is None:
                return {}
            return self._upload_outputs(job, result, settings.outputs, provenance)

    def _upload_outputs(
        self, job: Job, result: RenderResult, kinds: list[str], provenance: Provenance
    ) -> dict[str, Any]:
        """Write the outputs asked for beside the video, sign what can be signed, and upload them all."""
        assert result.video is not None and result.frames is not None
        paths = {"video": result.video, **write_outputs(result.frames, result.video.parent, kinds, fps=result.fps)}
        outputs = []
        for kind, path in paths.items():
            media_type = MEDIA_TYPES[kind]
            provenance.sign_file(path, media_type)
            key = output_key(job.id, job.lease, path.name)
            self.storage.put(key, path, media_type)
            outputs.append({"kind": kind, "key": key, "media_type": media_type, "bytes": path.stat().st_size})
        video = {
            "key": outputs[0]["key"],
            "width": result.width,
            "height": result.height,
            "frames": len(result.frames),
            "fps": result.fps,
            "bytes": outputs[0]["bytes"],
        }
        return {"video": video, "outputs": outputs}

    def _on_event(self, job: Job, event: RenderEvent, keyframe_png: bytes | None = None) -> None:
        """Record the event on the job. keyframe_png: a KeyframeReady's file, as it is stored."""
        job_id, lease = job.id, job.lease
        eta = event.eta_seconds
        progress = {"progress": repr(event.progress), "eta_seconds": "" if eta is None else repr(eta)}
        data = {"progress": event.progress, "eta_seconds": eta}
        match event:
            case StageStarted(stage=stage):
                data["stage"] = stage
                self.store.update(job_id, lease, {**progress, "stage": stage}, EventType.STAGE_STARTED, data)
            case StageFinished(stage=stage, seconds=seconds):
                data |= {"stage": stage, "seconds": seconds}
                self.store.update(job_id, lease, progress, EventType.STAGE_FINISHED, data)
                self.store.observe_stage_seconds(stage, seconds)
            case StepFinished(stage=stage, step=step, total=total):
                data |= {"stage": stage, "step": step, "total": total}
                self.store.update(job_id, lease, progress, EventType.PROGRESS, data)
            case PromptReady(prompt=prompt):
                data["prompt"] = prompt
                self.store.update(job_id, lease, {**progress, "prompt": prompt}, EventType.PROMPT, data)
            case KeyframeReady(index=index, undo_step=undo_step):
                key = keyframe_key(job_id, lease, index)
                assert keyframe_png is not None
                self.storage.put(key, keyframe_png, "image/png")
                data |= {"index": index, "undo_step": undo_step, "key": key}
                keyframe = Keyframe(index, undo_step, key)
                if self.store.update(job_id, lease, progress, EventType.KEYFRAME, data, keyframe) is not None:
                    self.notifier.notify(self.store.get(job_id) or job, EventType.KEYFRAME)

    def end(self, job_id: str, status: JobStatus, *, lease: int | None = None, **fields) -> None:
        """Finish the job (fenced by `lease` when given) and send its terminal webhook."""
        job = self.store.finish(job_id, status, lease=lease, **fields)
        if job is not None:
            log.info("job %s %s", job_id, status)
            self.notifier.notify(job, EventType(f"job.{status}"))

    def fail(self, job_id: str, code: ErrorCode, message: str, *, lease: int | None = None) -> None:
        self.end(job_id, JobStatus.FAILED, lease=lease, error={"code": str(code), "message": message})
