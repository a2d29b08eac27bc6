"""What a job is: its record, status, events and the storage keys of its files. Plain data, no I/O."""

import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    def is_terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)


class EventType(StrEnum):
    """Types of the entries of a job's event stream (SSE `event:` names). job.* ones are also webhook events."""

    QUEUED = "job.queued"
    STARTED = "job.started"
    STAGE_STARTED = "stage.started"
    STAGE_FINISHED = "stage.finished"
    PROGRESS = "job.progress"
    PROMPT = "job.prompt"
    KEYFRAME = "job.keyframe"
    SUCCEEDED = "job.succeeded"
    FAILED = "job.failed"
    CANCELED = "job.canceled"

    def is_terminal(self) -> bool:
        return self in (EventType.SUCCEEDED, EventType.FAILED, EventType.CANCELED)


TERMINAL_EVENTS = {
    JobStatus.SUCCEEDED: EventType.SUCCEEDED,
    JobStatus.FAILED: EventType.FAILED,
    JobStatus.CANCELED: EventType.CANCELED,
}


@dataclass(frozen=True)
class Keyframe:
    index: int
    undo_step: int
    key: str


@dataclass(frozen=True)
class Event:
    id: str  # the stream entry id, SSE's event id
    type: EventType
    data: dict[str, Any]


@dataclass(frozen=True)
class Job:
    id: str
    owner: str
    status: JobStatus
    settings: dict[str, Any]  # RenderSettings as JSON
    input_key: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    stage: str | None = None
    progress: float = 0.0
    eta_seconds: float | None = None
    prompt: str | None = None
    video: dict[str, Any] | None = None  # {"key", "width", "height", "frames", "fps", "bytes"}
    outputs: tuple[dict[str, Any], ...] = ()  # each {"kind", "key", "media_type", "bytes"}, the video's first
    error: dict[str, str] | None = None  # {"code", "message"}
    attempts: int = 0
    lease: int = 0  # fencing token: increases at each start; only the worker holding it may write
    lease_until: float | None = None  # a running job whose worker stops renewing this is reaped
    cancel_requested: bool = False
    webhook_url: str | None = None
    webhook_events: tuple[str, ...] = ()
    request_hash: str = ""
    keyframes: tuple[Keyframe, ...] = ()
    webhook_attempts: tuple[dict[str, Any], ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)  # the client's own keys and values, echoed back
    supplied_keyframes: tuple[str, ...] = ()  # storage keys of the request's own keyframes, earliest first


def new_job_id(now: float) -> str:
    """`job_` + 12 hex digits of milliseconds + 16 random hex digits: unique, and sorting ids sorts by creation."""
    return f"job_{int(now * 1000):012x}{secrets.token_hex(8)}"


# Storage keys of a job's files: all under one prefix, so deleting a job deletes them together.
def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"


def input_key(job_id: str) -> str:
    return f"jobs/{job_id}/input"


def supplied_keyframe_key(job_id: str, index: int) -> str:
    return f"jobs/{job_id}/input-keyframes/{index:02d}"


def keyframe_key(job_id: str, lease: int, index: int) -> str:
    """Each attempt (lease) writes under its own keys, so a stale worker's late upload never replaces a file
    of the attempt that took over."""
    return f"jobs/{job_id}/r{lease}/keyframes/{index:02d}.png"


def output_key(job_id: str, lease: int, file_name: str) -> str:
    """A file made from an attempt's video: the video itself (video_key), preview.webp or frames.zip."""
    return f"jobs/{job_id}/r{lease}/{file_name}"


def video_key(job_id: str, lease: int) -> str:
    return output_key(job_id, lease, "video.mp4")
