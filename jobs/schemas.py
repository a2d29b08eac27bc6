"""The job object clients see (API responses, webhook bodies), built from a stored `Job` with fresh URLs.

Light: no torch. URLs are minted on each read, so they are always valid for `expires_in` seconds.
"""

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from jobs.errors import ErrorCode, InvalidRequest
from jobs.records import EventType, Job, JobStatus
from jobs.storage import Storage
from model_core.settings import RenderSettings

EXAMPLE_URL = (
    "https://api.example.com/v1/files/jobs/job_0193a1b2c3d4e5f60718293a4b5c/video.mp4?expires=1767225600&signature=..."
)


class KeyframeOut(BaseModel):
    index: int = Field(description="Position in the settings' undo_steps.")
    undo_step: int = Field(description="How many operations back this state is (0..999).")
    url: str = Field(description="PNG; expires.")


class VideoOut(BaseModel):
    url: str = Field(description="H.264 MP4; expires.")
    width: int
    height: int
    frames: int
    fps: int


class OutputOut(BaseModel):
    """A file the job made: the video, and the outputs its settings asked for."""

    kind: Literal["video", "preview", "frames"] = Field(
        description="video: the H.264 MP4 (always made); preview: an animated WebP, at most 512 px on its long side, "
        "that loops; frames: every frame as a PNG (frame_0000.png, ...) in one ZIP."
    )
    url: str = Field(description="Expires; minted afresh on each read.")
    media_type: str = Field(description="video/mp4, image/webp or application/zip.")
    bytes: int = Field(description="Size of the file.")


class ErrorOut(BaseModel):
    code: ErrorCode = Field(
        description="A failed job's reason: invalid_input, render_failed, timeout, worker_lost, model_unavailable "
        "or storage_unavailable."
    )
    message: str


class WebhookAttemptOut(BaseModel):
    event: str
    webhook_id: str
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None


Metadata = dict[str, str]
METADATA_DESCRIPTION = (
    "The client's own reference, as given at submission: up to 16 string keys and string values of at most "
    "256 characters each. Echoed in every read, event and webhook."
)


class JobOut(BaseModel):
    """A job as clients see it: GET /v1/jobs/{id}, list entries, terminal events and webhook bodies."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "job_0193a1b2c3d4e5f60718293a4b5c",
                    "status": "succeeded",
                    "stage": None,
                    "progress": 1.0,
                    "queue_position": None,
                    "eta_seconds": None,
                    "created_at": "2026-11-30T10:00:00Z",
                    "started_at": "2026-11-30T10:00:02Z",
                    "finished_at": "2026-11-30T10:03:10Z",
                    "prompt": "1girl, solo, long hair, smile",
                    "settings": {
                        **RenderSettings().model_dump(mode="json"),
                        "undo_steps": [400, 999],
                        "outputs": ["preview"],
                    },
                    "keyframes": [{"index": 0, "undo_step": 400, "url": EXAMPLE_URL.replace("video.mp4", "k/00.png")}],
                    "video": {"url": EXAMPLE_URL, "width": 640, "height": 384, "frames": 45, "fps": 4},
                    "outputs": [
                        {"kind": "video", "url": EXAMPLE_URL, "media_type": "video/mp4", "bytes": 1843210},
                        {
                            "kind": "preview",
                            "url": EXAMPLE_URL.replace("video.mp4", "preview.webp"),
                            "media_type": "image/webp",
                            "bytes": 912344,
                        },
                    ],
                    "supplied_keyframes": 0,
                    "error": None,
                    "cancel_requested": False,
                    "metadata": {"artwork_id": "art_42", "user_id": "u_7"},
                    "webhook_url": "https://app.example.com/hooks/paints-undo",
                    "webhook_events": ["job.succeeded", "job.failed"],
                    "webhook_attempts": [],
                }
            ]
        }
    )

    id: str = Field(description="job_ followed by 28 hex digits; ids sort by creation time.")
    status: JobStatus
    stage: str | None = Field(description="tagging, keyframes, interpolation or encoding while running.")
    progress: float = Field(ge=0, le=1)
    queue_position: int | None = Field(description="1 = next to start; only while queued.")
    eta_seconds: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    prompt: str | None = Field(description="The keyframe prompt used: the settings' own or the tagger's.")
    settings: RenderSettings = Field(
        description='The RenderSettings of the job, defaults filled in; width and height stay "auto" when they were '
        "(the video's width and height give the size used)."
    )
    keyframes: list[KeyframeOut] = Field(
        description="The keyframes the keyframe model made, in undo_steps order; grows as they are generated. Empty "
        "when the request supplied its own."
    )
    supplied_keyframes: int = Field(description="How many keyframes the request supplied (0: the model made them).")
    video: VideoOut | None = Field(description='The MP4, once the job succeeded; null with stop_after "keyframes".')
    outputs: list[OutputOut] = Field(
        description="Every file made from the video, the MP4 first, then those settings.outputs asked for; empty until "
        "the job succeeds."
    )
    error: ErrorOut | None
    cancel_requested: bool = Field(
        description="True once a cancel was asked: a running job stops at its next sampler step and ends canceled."
    )
    metadata: Metadata = Field(description=METADATA_DESCRIPTION)
    webhook_url: str | None
    webhook_events: list[str]
    webhook_attempts: list[WebhookAttemptOut]


MAX_METADATA_KEYS = 16
MAX_METADATA_LENGTH = 256  # characters of each key and each value


def parse_metadata(text: str | None) -> dict[str, str]:
    """The `metadata` form field: a JSON object of up to 16 string keys and string values of at most 256
    characters each. InvalidRequest (invalid_metadata) names what is wrong."""
    if text is None:
        return {}

    def refuse(message: str) -> InvalidRequest:
        return InvalidRequest(ErrorCode.INVALID_METADATA, f"metadata: {message}")

    try:
        value = json.loads(text)
    except ValueError as err:
        raise refuse(f"not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise refuse("must be a JSON object of string keys and string values")
    if len(value) > MAX_METADATA_KEYS:
        raise refuse(f"{len(value)} keys; at most {MAX_METADATA_KEYS}")
    for key, item in value.items():
        if not 1 <= len(key) <= MAX_METADATA_LENGTH:
            raise refuse(f"key {key[:40]!r} must be 1 to {MAX_METADATA_LENGTH} characters")
        if not isinstance(item, str):
            raise refuse(f"the value of {key!r} must be a string, not {type(item).__name__}")
        if len(item) > MAX_METADATA_LENGTH:
            raise refuse(f"the value of {key!r} is {len(item)} characters; at most {MAX_METADATA_LENGTH}")
    return value


def timestamp(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def job_view(job: Job, storage: Storage, expires_in: int, queue_position: int | None = None) -> JobOut:
    running = job.status == JobStatus.RUNNING
    return JobOut(
        id=job.id,
        status=job.status,
        stage=job.stage if running else None,
        progress=job.progress,
        queue_position=queue_position if job.status == JobStatus.QUEUED else None,
        eta_seconds=job.eta_seconds if running else None,
        created_at=timestamp(job.created_at),
        started_at=timestamp(job.started_at),
        finished_at=timestamp(job.finished_at),
        prompt=job.prompt,
        settings=RenderSettings.model_validate(job.settings, strict=False),
        keyframes=[
            KeyframeOut(index=k.index, undo_step=k.undo_step, url=storage.url(k.key, expires_in))
            for k in sorted(job.keyframes, key=lambda k: k.index)
        ],
        supplied_keyframes=len(job.supplied_keyframes),
        video=video_view(job.video, storage, expires_in) if job.video else None,
        outputs=[output_view(output, storage, expires_in) for output in job.outputs],
        error=ErrorOut(**job.error) if job.error else None,
        cancel_requested=job.cancel_requested,
        metadata=job.metadata,
        webhook_url=job.webhook_url,
        webhook_events=list(job.webhook_events) if job.webhook_url else [],
        webhook_attempts=[
            WebhookAttemptOut(**{**attempt, "at": timestamp(attempt["at"])}) for attempt in job.webhook_attempts
        ],
    )


def video_view(video: dict[str, Any], storage: Storage, expires_in: int) -> VideoOut:
    """`video` as stored by the worker: {"key", "width", "height", "frames", "fps", "bytes"}."""
    return VideoOut(
        url=storage.url(video["key"], expires_in),
        width=video["width"],
        height=video["height"],
        frames=video["frames"],
        fps=video["fps"],
    )


def output_view(output: dict[str, Any], storage: Storage, expires_in: int) -> OutputOut:
    """An output as stored by the worker: {"kind", "key", "media_type", "bytes"}."""
    url = storage.url(output["key"], expires_in)
    return OutputOut(kind=output["kind"], url=url, media_type=output["media_type"], bytes=output["bytes"])


# --- What the event stream and webhooks carry (documentation of their bodies, and the terminal events' type) --


class EventData(BaseModel):
    """Fields every event's `data` has."""

    metadata: Metadata = Field(description=METADATA_DESCRIPTION)


class StatusEventData(EventData):
    """job.queued (also when a job is requeued after its worker was lost) and job.started."""

    status: JobStatus
    attempt: int | None = Field(None, description="job.started: 1 for the first try, more after a requeue.")


class ProgressEventData(EventData):
    """stage.started, stage.finished, job.progress, job.prompt and job.keyframe: the render's progress."""

    progress: float = Field(ge=0, le=1, description="Fraction of the whole render done.")
    eta_seconds: float | None = Field(description="Estimated seconds left; null until it can be estimated.")
    stage: str | None = Field(None, description="stage.*, job.progress: tagging, keyframes, interpolation, encoding.")
    seconds: float | None = Field(None, description="stage.finished: how long the stage took.")
    step: int | None = Field(None, description="job.progress: sampler steps (or encoded frames) done of `total`.")
    total: int | None = None
    prompt: str | None = Field(None, description="job.prompt: the keyframe prompt used.")
    index: int | None = Field(None, description="job.keyframe: the keyframe's position in undo_steps.")
    undo_step: int | None = Field(None, description="job.keyframe: its undo step.")
    url: str | None = Field(None, description="job.keyframe: PNG URL, minted when the event is sent; expires.")


class TerminalEventData(EventData):
    """job.succeeded, job.failed, job.canceled: the last event of a stream; `job` is the job as GET returns it."""

    status: JobStatus
    error: ErrorOut | None = Field(description="job.failed: why.")
    job: JobOut | None = Field(
        description="The finished job, video and outputs included, with URLs minted when the event is sent; null "
        "when the job was deleted before the event was read."
    )


EVENT_DATA: dict[EventType, type[EventData]] = {
    EventType.QUEUED: StatusEventData,
    EventType.STARTED: StatusEventData,
    EventType.STAGE_STARTED: ProgressEventData,
    EventType.STAGE_FINISHED: ProgressEventData,
    EventType.PROGRESS: ProgressEventData,
    EventType.PROMPT: ProgressEventData,
    EventType.KEYFRAME: ProgressEventData,
    EventType.SUCCEEDED: TerminalEventData,
    EventType.FAILED: TerminalEventData,
    EventType.CANCELED: TerminalEventData,
}


class WebhookBody(BaseModel):
    """The JSON body POSTed to a job's webhook_url, signed per Standard Webhooks (webhook-id, webhook-timestamp,
    webhook-signature headers). A retry resends the same body under the same webhook-id."""

    type: Literal["job.started", "job.keyframe", "job.succeeded", "job.failed", "job.canceled"] = Field(
        description="The event; only those in the job's webhook_events are sent."
    )
    timestamp: datetime
    data: JobOut = Field(description="The job as GET returns it at the event, metadata and (when done) video included.")
