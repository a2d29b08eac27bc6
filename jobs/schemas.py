"""The job object clients see (API responses, webhook bodies), built from a stored `Job` with fresh URLs.

Light: no torch. URLs are minted on each read, so they are always valid for `expires_in` seconds.
"""

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from jobs.errors import ErrorCode, InvalidRequest
from jobs.records import Job, JobStatus
from jobs.storage import Storage


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


class ErrorOut(BaseModel):
    code: str
    message: str


class WebhookAttemptOut(BaseModel):
    event: str
    webhook_id: str
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None


class JobOut(BaseModel):
    id: str
    status: JobStatus
    stage: str | None = Field(description="tagging, keyframes, interpolation or encoding while running.")
    progress: float = Field(ge=0, le=1)
    queue_position: int | None = Field(description="1 = next to start; only while queued.")
    eta_seconds: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    prompt: str | None = Field(description="The keyframe prompt used: the settings' own or the tagger's.")
    settings: dict[str, Any] = Field(description="The RenderSettings of the job.")
    keyframes: list[KeyframeOut] = Field(description="Grows as the keyframes are generated.")
    video: VideoOut | None
    error: ErrorOut | None
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
        settings=job.settings,
        keyframes=[
            KeyframeOut(index=k.index, undo_step=k.undo_step, url=storage.url(k.key, expires_in))
            for k in sorted(job.keyframes, key=lambda k: k.index)
        ],
        video=video_view(job.video, storage, expires_in) if job.video else None,
        error=ErrorOut(**job.error) if job.error else None,
        webhook_url=job.webhook_url,
        webhook_events=list(job.webhook_events) if job.webhook_url else [],
        webhook_attempts=[
            WebhookAttemptOut(**{**attempt, "at": timestamp(attempt["at"])}) for attempt in job.webhook_attempts
        ],
    )


def video_view(video: dict[str, Any], storage: Storage, expires_in: int) -> VideoOut:
    """`video` as stored by the worker: {"key", "width", "height", "frames", "fps"}."""
    return VideoOut(
        url=storage.url(video["key"], expires_in),
        width=video["width"],
        height=video["height"],
        frames=video["frames"],
        fps=video["fps"],
    )
