"""The job runner's outcomes, each once, with a fake pipeline: a real (private) Redis and folder storage,
no models and no Celery. The e2e tests run the same runner in a real worker on the tiny checkpoints."""

import io
import json
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import c2pa
import numpy as np
import pytest
from c2pa_certs import make_signing_chain
from celery.exceptions import SoftTimeLimitExceeded
from PIL import Image
from services import start_redis_server

from jobs.errors import ErrorCode
from jobs.records import (
    EventType,
    Job,
    JobStatus,
    input_key,
    keyframe_key,
    new_job_id,
    output_key,
    supplied_keyframe_key,
    video_key,
)
from jobs.storage import LocalStorage, StorageError
from jobs.store import JobStore, connect
from model_core.credentials import ContentCredentials
from model_core.errors import CheckpointError, InvalidInputError, RenderCanceled
from model_core.events import KeyframeReady, PromptReady, RenderEvent, Stage, StageStarted
from model_core.pipeline import RenderResult
from model_core.video import write_mp4
from worker.runner import JobRunner

MAX_ATTEMPTS = 3
LEASE_SECONDS = 60.0


@dataclass
class FakePipeline:
    """Emits a few events like the real pipeline, then raises `raises` or writes a tiny video of 5 frames
    (none when the settings stop after the keyframes). Records the keyframes it was given."""

    raises: BaseException | None = None
    while_running: Callable[[], object] = lambda: None
    cancel_checks: list[bool] = field(default_factory=list)
    supplied: list[list[np.ndarray] | None] = field(default_factory=list)

    def render(
        self, image, output, settings, *, keyframes=None, on_event: Callable[[RenderEvent], None], should_cancel
    ):
        self.supplied.append(keyframes)
        on_event(StageStarted(progress=0.0, eta_seconds=None, stage=Stage.TAGGING))
        on_event(PromptReady(progress=0.1, eta_seconds=5.0, prompt="1girl, solo"))
        keyframe = np.full((8, 8, 3), 200, np.uint8)
        on_event(KeyframeReady(progress=0.5, eta_seconds=2.0, index=0, undo_step=400, image=keyframe))
        self.while_running()
        self.cancel_checks.append(should_cancel())
        if self.cancel_checks[-1]:
            raise RenderCanceled()
        if self.raises is not None:
            raise self.raises
        if settings.stop_after == "keyframes":
            assert output is None
            return RenderResult(prompt="1girl, solo", keyframes=[keyframe], frames=None, fps=4, video=None)
        frames = np.linspace(0, 255, 5 * 16 * 24 * 3).astype(np.uint8).reshape(5, 16, 24, 3)
        write_mp4(frames, output, fps=4)
        return RenderResult(prompt="1girl, solo", keyframes=[keyframe], frames=frames, fps=4, video=Path(output))


@dataclass
class RecordingNotifier:
    sent: list[tuple[str, EventType]] = field(default_factory=list)

    def notify(self, job: Job, event: EventType) -> None:
        self.sent.append((job.id, event))


class BrokenStorage(LocalStorage):
    """Folder storage whose uploads fail (S3 unreachable), reads work."""

    def put(self, key: str, data, content_type: str) -> None:
        raise StorageError("connection refused")


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with start_redis_server() as url:
        yield url


@pytest.fixture
def store(redis_url: str) -> JobStore:
    return JobStore(connect(redis_url, interactive=True), retention_seconds=3600)


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path, b"s" * 32, "http://127.0.0.1:8000")


def png(color: str, size: tuple[int, int] = (32, 32)) -> bytes:
    picture = io.BytesIO()
    Image.new("RGB", size, color).save(picture, format="PNG")
    return picture.getvalue()


def queued_job(
    store: JobStore, storage: LocalStorage, settings: dict | None = None, supplied: tuple[bytes, ...] = ()
) -> str:
    job_id = new_job_id(time.time())
    storage.put(input_key(job_id), png("white"), "image/png")
    keys = tuple(supplied_keyframe_key(job_id, index) for index in range(len(supplied)))
    for key, data in zip(keys, supplied, strict=True):
        storage.put(key, data, "image/png")
    job = Job(
        job_id, "owner", JobStatus.QUEUED, settings or {}, input_key(job_id), time.time(), supplied_keyframes=keys
    )
    store.create(job, max_active=99)
    return job_id


def run(
    store: JobStore,
    storage: LocalStorage,
    pipeline: Callable[[], FakePipeline],
    settings: dict | None = None,
    **runner_options,
) -> tuple[str, RecordingNotifier]:
    notifier = RecordingNotifier()
    job_id = queued_job(store, storage, settings)
    JobRunner(store, storage, notifier, pipeline, MAX_ATTEMPTS, LEASE_SECONDS, **runner_options).run(job_id)
    return job_id, notifier


def test_a_render_that_succeeds_stores_the_video_and_keyframes(store: JobStore, storage: LocalStorage) -> None:
    job_id, notifier = run(store, storage, lambda: FakePipeline(), models=("owner/keyframes", "owner/video"))
    job = store.get(job_id)
    assert job.status == JobStatus.SUCCEEDED and job.progress == 1.0
    video = storage.get(video_key(job_id, 1))
    size = len(video)
    assert job.video == {"key": video_key(job_id, 1), "width": 24, "height": 16, "frames": 5, "fps": 4, "bytes": size}
    assert job.outputs == ({"kind": "video", "key": video_key(job_id, 1), "media_type": "video/mp4", "bytes": size},)
    assert video[4:8] == b"ftyp"
    assert [(k.index, k.undo_step) for k in job.keyframes] == [(0, 400)]
    keyframe = Image.open(io.BytesIO(storage.get(keyframe_key(job_id, 1, 0))))
    assert keyframe.size == (8, 8)
    # How it was made, as plain PNG text.
    assert keyframe.text["prompt"] == "1girl, solo" and keyframe.text["undo_step"] == "400"
    assert keyframe.text["keyframe_seed"] == "12345" and keyframe.text["models"] == "owner/keyframes, owner/video"
    assert job.prompt == "1girl, solo"
    assert notifier.sent == [(job_id, EventType.STARTED), (job_id, EventType.KEYFRAME), (job_id, EventType.SUCCEEDED)]


def test_the_outputs_asked_for_are_stored_beside_the_video(store: JobStore, storage: LocalStorage) -> None:
    job_id, _ = run(store, storage, lambda: FakePipeline(), settings={"outputs": ["frames", "preview"]})
    job = store.get(job_id)
    assert [output["kind"] for output in job.outputs] == ["video", "frames", "preview"]
    for output in job.outputs:
        assert len(storage.get(output["key"])) == output["bytes"]
    frames, preview = job.outputs[1:]
    assert (frames["key"], frames["media_type"]) == (output_key(job_id, 1, "frames.zip"), "application/zip")
    with zipfile.ZipFile(io.BytesIO(storage.get(frames["key"]))) as archive:
        assert len(archive.namelist()) == 5
    assert (preview["key"], preview["media_type"]) == (output_key(job_id, 1, "preview.webp"), "image/webp")
    with Image.open(io.BytesIO(storage.get(preview["key"]))) as image:
        assert image.format == "WEBP" and image.n_frames == 5


def test_stop_after_keyframes_succeeds_with_keyframes_and_no_video(store: JobStore, storage: LocalStorage) -> None:
    job_id, notifier = run(store, storage, lambda: FakePipeline(), settings={"stop_after": "keyframes"})
    job = store.get(job_id)
    assert job.status == JobStatus.SUCCEEDED and job.video is None and job.outputs == ()
    assert [(k.index, k.undo_step) for k in job.keyframes] == [(0, 400)]
    assert notifier.sent[-1] == (job_id, EventType.SUCCEEDED)


def test_supplied_keyframes_reach_the_pipeline_in_order(store: JobStore, storage: LocalStorage) -> None:
    pipeline = FakePipeline()
    supplied = (png("black", (20, 30)), png("gray", (30, 20)))
    job_id = queued_job(store, storage, supplied=supplied)
    JobRunner(store, storage, RecordingNotifier(), lambda: pipeline, MAX_ATTEMPTS, LEASE_SECONDS).run(job_id)
    assert store.get(job_id).status == JobStatus.SUCCEEDED
    (given,) = pipeline.supplied
    assert [(k.shape, int(k[0, 0, 0])) for k in given] == [((30, 20, 3), 0), ((20, 30, 3), 128)]


def test_with_credentials_every_file_carries_a_signed_manifest(
    store: JobStore, storage: LocalStorage, tmp_path: Path
) -> None:
    chain = make_signing_chain(tmp_path / "chain")
    credentials = ContentCredentials.from_pem_files(chain.cert, chain.key)
    job_id, _ = run(store, storage, lambda: FakePipeline(), {"outputs": ["preview"]}, credentials=credentials)
    job = store.get(job_id)
    files = [(output["key"], output["media_type"]) for output in job.outputs]
    files.append((keyframe_key(job_id, 1, 0), "image/png"))
    for key, media_type in files:
        with c2pa.Reader(media_type, io.BytesIO(storage.get(key))) as reader:
            manifest = json.loads(reader.json())
            assert reader.get_validation_state() == "Valid"
        active = manifest["manifests"][manifest["active_manifest"]]
        (ingredient,) = active["ingredients"]
        assert ingredient["format"] == "image/png" and ingredient["relationship"] == "inputTo"


@pytest.mark.parametrize(
    ("raised", "code"),
    [
        (InvalidInputError("the picture is 3x2 pixels"), ErrorCode.INVALID_INPUT),
        (SoftTimeLimitExceeded(), ErrorCode.TIMEOUT),
        (RuntimeError("CUDA error: an illegal memory access"), ErrorCode.RENDER_FAILED),
    ],
)
def test_a_render_error_fails_the_job_with_its_code(
    store: JobStore, storage: LocalStorage, raised: BaseException, code: ErrorCode
) -> None:
    job_id, notifier = run(store, storage, lambda: FakePipeline(raises=raised))
    job = store.get(job_id)
    assert job.status == JobStatus.FAILED
    assert job.error["code"] == code
    assert notifier.sent[-1] == (job_id, EventType.FAILED)
    assert store.counters().failures_by_code[code] >= 1


def test_a_cancel_ends_the_job_canceled(store: JobStore, storage: LocalStorage) -> None:
    job_id, notifier = run(store, storage, lambda: FakePipeline(raises=RenderCanceled()))
    assert store.get(job_id).status == JobStatus.CANCELED
    assert notifier.sent[-1] == (job_id, EventType.CANCELED)


def test_a_cancel_requested_while_running_reaches_the_pipeline(store: JobStore, storage: LocalStorage) -> None:
    job_id = queued_job(store, storage)
    pipeline = FakePipeline(while_running=lambda: store.request_cancel(job_id))
    JobRunner(store, storage, RecordingNotifier(), lambda: pipeline, MAX_ATTEMPTS, LEASE_SECONDS).run(job_id)
    assert pipeline.cancel_checks == [True]
    assert store.get(job_id).status == JobStatus.CANCELED


def test_models_that_failed_to_load_fail_the_job(store: JobStore, storage: LocalStorage) -> None:
    def failed_load() -> FakePipeline:
        raise CheckpointError("unet/diffusion_pytorch_model.safetensors is missing 3 tensors")

    job_id, _ = run(store, storage, failed_load)
    job = store.get(job_id)
    assert (job.status, job.error["code"]) == (JobStatus.FAILED, ErrorCode.MODEL_UNAVAILABLE)
    assert "missing 3 tensors" in job.error["message"]


def test_a_missing_input_file_is_invalid_input(store: JobStore, storage: LocalStorage) -> None:
    notifier = RecordingNotifier()
    job_id = queued_job(store, storage)
    storage.delete_prefix(f"jobs/{job_id}/")
    JobRunner(store, storage, notifier, lambda: FakePipeline(), MAX_ATTEMPTS, LEASE_SECONDS).run(job_id)
    assert store.get(job_id).error["code"] == ErrorCode.INVALID_INPUT


def test_a_storage_outage_puts_the_job_back_in_the_queue_and_propagates(store: JobStore, tmp_path: Path) -> None:
    """The task retries it later (Celery retry with backoff); the runner must not fail the job."""
    storage = LocalStorage(tmp_path, b"s" * 32, "http://127.0.0.1:8000")
    job_id = queued_job(store, storage)
    broken = BrokenStorage(tmp_path, b"s" * 32, "http://127.0.0.1:8000")
    with pytest.raises(StorageError):
        JobRunner(store, broken, RecordingNotifier(), lambda: FakePipeline(), MAX_ATTEMPTS, LEASE_SECONDS).run(job_id)
    job = store.get(job_id)
    assert (job.status, job.attempts) == (JobStatus.QUEUED, 0)  # the outage does not count as an attempt


def test_a_job_whose_worker_died_too_often_fails_as_worker_lost(store: JobStore, storage: LocalStorage) -> None:
    job_id = queued_job(store, storage)
    for _ in range(MAX_ATTEMPTS):
        store.start(job_id, LEASE_SECONDS)  # each start counts an attempt; a killed worker never ends it
        store.release(job_id)
    pipeline = FakePipeline()
    JobRunner(store, storage, RecordingNotifier(), lambda: pipeline, MAX_ATTEMPTS, LEASE_SECONDS).run(job_id)
    job = store.get(job_id)
    assert (job.status, job.error["code"]) == (JobStatus.FAILED, ErrorCode.WORKER_LOST)
    assert pipeline.cancel_checks == []  # never rendered


def test_a_finished_job_is_not_run_again(store: JobStore, storage: LocalStorage) -> None:
    """A redelivered message of a job that ended already (acks late) does nothing."""
    job_id, notifier = run(store, storage, lambda: FakePipeline())
    pipeline = FakePipeline()
    JobRunner(store, storage, notifier, lambda: pipeline, MAX_ATTEMPTS, LEASE_SECONDS).run(job_id)
    assert pipeline.cancel_checks == []
    assert store.get(job_id).attempts == 1


def test_a_worker_that_lost_its_lease_stops_and_writes_nothing_more(store: JobStore, storage: LocalStorage) -> None:
    """Its job was reaped and started elsewhere (lease 2): this worker's events and end are refused, and the
    job stays the new worker's."""
    job_id = queued_job(store, storage)

    def taken_over() -> None:
        store.release(job_id)
        store.start(job_id, LEASE_SECONDS)  # another worker, lease 2

    pipeline = FakePipeline(while_running=taken_over)
    runner = JobRunner(store, storage, RecordingNotifier(), lambda: pipeline, MAX_ATTEMPTS, LEASE_SECONDS)
    runner.run(job_id)
    job = store.get(job_id)
    assert (job.status, job.lease) == (JobStatus.RUNNING, 2)
    assert store.renew(job_id, 2, LEASE_SECONDS)


def test_the_lease_is_renewed_while_the_job_runs(store: JobStore, storage: LocalStorage) -> None:
    job_id = queued_job(store, storage)
    renewals: list[float] = []

    def wait_for_two_renewals() -> None:
        seen = store.get(job_id).lease_until
        while len(renewals) < 2:
            time.sleep(0.01)  # a pause between reads, so the renewing thread gets the GIL on a busy machine
            now = store.get(job_id).lease_until
            if now != seen:
                renewals.append(seen := now)

    pipeline = FakePipeline(while_running=wait_for_two_renewals)
    JobRunner(store, storage, RecordingNotifier(), lambda: pipeline, MAX_ATTEMPTS, lease_seconds=0.2).run(job_id)
    assert renewals == sorted(renewals) and store.get(job_id).status == JobStatus.SUCCEEDED
