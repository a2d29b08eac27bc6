"""What the API returns, as frozen dataclasses: one class per schema of the OpenAPI document.

`tests/client/test_client_models.py` compares every class here with the schema it mirrors (`Job` with `JobOut`,
`ProgressEvent` with `ProgressEventData`, ...), so the two cannot drift apart unnoticed. Parsing ignores fields
it does not know, so a newer server does not break this client.
"""

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal, TypedDict, TypeVar

T = TypeVar("T")

JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
OutputKind = Literal["video", "preview", "frames"]
EventType = Literal[
    "job.queued",
    "job.started",
    "stage.started",
    "stage.finished",
    "job.progress",
    "job.prompt",
    "job.keyframe",
    "job.succeeded",
    "job.failed",
    "job.canceled",
]
WebhookEventType = Literal["job.started", "job.keyframe", "job.succeeded", "job.failed", "job.canceled"]


class RenderSettings(TypedDict, total=False):
    """The `settings` of a job; every field is optional and the server fills in its default.

    See the API's RenderSettings schema (`/openapi.json`) for ranges and defaults.
    """

    prompt: str | None  # null: the tagger describes the picture
    negative_prompt: str
    undo_steps: list[int] | None  # null: the keyframe model's defaults
    width: int | Literal["auto"]
    height: int | Literal["auto"]
    keyframe_steps: int
    keyframe_cfg: float
    keyframe_seed: int
    video_prompt: str
    video_steps: int
    video_cfg: float
    video_seed: int
    video_cache_interval: int
    fps: int
    stop_after: Literal["keyframes"] | None  # "keyframes": no video, only the keyframes
    outputs: list[Literal["preview", "frames"]]  # extra outputs beside the video


def timestamp(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def pick(cls: type[T], data: dict[str, Any], **converted: Any) -> T:
    """Dataclass `cls` from the fields of `data` it has (others are ignored: a newer server's), `converted` for some.

    A field missing from `data` takes its default; a required one missing is a TypeError.
    """
    names = [field.name for field in fields(cls)]  # type: ignore[arg-type]
    return cls(**{name: data[name] for name in names if name in data and name not in converted}, **converted)


@dataclass(frozen=True)
class Keyframe:
    index: int
    undo_step: int
    url: str  # PNG; expires


@dataclass(frozen=True)
class Video:
    url: str  # H.264 MP4; expires
    width: int
    height: int
    frames: int
    fps: int


@dataclass(frozen=True)
class Output:
    kind: OutputKind
    url: str  # expires
    media_type: str
    bytes: int


@dataclass(frozen=True)
class ErrorDetail:
    """Why a job failed (`Job.error`), or an error answer's body."""

    code: str  # a plain string: a code added to the API later must not break this client
    message: str


@dataclass(frozen=True)
class WebhookAttempt:
    event: str
    webhook_id: str
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None


@dataclass(frozen=True)
class Job:
    id: str
    status: JobStatus
    stage: str | None
    progress: float
    queue_position: int | None
    eta_seconds: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    prompt: str | None
    settings: RenderSettings
    keyframes: list[Keyframe]
    video: Video | None
    outputs: list[Output]
    supplied_keyframes: int
    error: ErrorDetail | None
    cancel_requested: bool
    metadata: dict[str, str]
    webhook_url: str | None
    webhook_events: list[str]
    webhook_attempts: list[WebhookAttempt]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Job":
        return pick(
            cls,
            data,
            created_at=datetime.fromisoformat(data["created_at"]),
            started_at=timestamp(data["started_at"]),
            finished_at=timestamp(data["finished_at"]),
            keyframes=[pick(Keyframe, keyframe) for keyframe in data["keyframes"]],
            video=pick(Video, data["video"]) if data["video"] else None,
            outputs=[pick(Output, output) for output in data["outputs"]],
            error=error_detail(data["error"]),
            webhook_attempts=[
                pick(WebhookAttempt, attempt, at=datetime.fromisoformat(attempt["at"]))
                for attempt in data["webhook_attempts"]
            ],
        )


def error_detail(data: dict[str, Any] | None) -> ErrorDetail | None:
    return None if data is None else pick(ErrorDetail, data)


@dataclass(frozen=True)
class JobPage:
    """One page of GET /v1/jobs (`Client.list` walks them all)."""

    jobs: list[Job]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "JobPage":
        return cls([Job.from_json(job) for job in data["jobs"]], data["next_cursor"])


# --- The event stream: one class per shape of `data`, with the message's `id` and `type` --------------------


@dataclass(frozen=True)
class StatusEvent:
    """job.queued (again when a lost worker's job is requeued) and job.started."""

    id: str  # resume after it with Last-Event-ID
    type: EventType
    metadata: dict[str, str]
    status: JobStatus
    attempt: int | None = None  # job.started: 1 for the first try, more after a requeue


@dataclass(frozen=True)
class ProgressEvent:
    """stage.started, stage.finished, job.progress, job.prompt and job.keyframe."""

    id: str
    type: EventType
    metadata: dict[str, str]
    progress: float  # fraction of the whole render done, never decreasing
    eta_seconds: float | None
    stage: str | None = None  # stage.*, job.progress: tagging, keyframes, interpolation, encoding
    seconds: float | None = None  # stage.finished: how long the stage took
    step: int | None = None  # job.progress: steps done of `total`
    total: int | None = None
    prompt: str | None = None  # job.prompt
    index: int | None = None  # job.keyframe: the keyframe's position, its undo step and its PNG
    undo_step: int | None = None
    url: str | None = None


@dataclass(frozen=True)
class TerminalEvent:
    """job.succeeded, job.failed, job.canceled: the last event of a stream, with the finished job."""

    id: str
    type: EventType
    metadata: dict[str, str]
    status: JobStatus
    error: ErrorDetail | None
    job: Job | None  # None when the job was deleted before the event was read


Event = StatusEvent | ProgressEvent | TerminalEvent

EVENT_CLASSES: dict[str, type[StatusEvent] | type[ProgressEvent] | type[TerminalEvent]] = {
    "job.queued": StatusEvent,
    "job.started": StatusEvent,
    "stage.started": ProgressEvent,
    "stage.finished": ProgressEvent,
    "job.progress": ProgressEvent,
    "job.prompt": ProgressEvent,
    "job.keyframe": ProgressEvent,
    "job.succeeded": TerminalEvent,
    "job.failed": TerminalEvent,
    "job.canceled": TerminalEvent,
}


def parse_event(event_id: str, event_type: str, data: dict[str, Any]) -> Event | None:
    """The typed event of one SSE message; None for a type this client does not know (a newer server's)."""
    cls = EVENT_CLASSES.get(event_type)
    if cls is None:
        return None
    if cls is TerminalEvent:
        return TerminalEvent(
            id=event_id,
            type=event_type,  # type: ignore[arg-type]
            metadata=data["metadata"],
            status=data["status"],
            error=error_detail(data["error"]),
            job=Job.from_json(data["job"]) if data.get("job") is not None else None,
        )
    return pick(cls, data, id=event_id, type=event_type)


@dataclass(frozen=True)
class WebhookEvent:
    """A verified webhook (`verify_webhook`): its body, and the message id to deduplicate retries by."""

    id: str  # the webhook-id header: the same on every retry of one message
    type: WebhookEventType
    timestamp: datetime
    data: Job  # the job as GET returned it at the event

    @classmethod
    def from_json(cls, message_id: str, body: dict[str, Any]) -> "WebhookEvent":
        return cls(message_id, body["type"], datetime.fromisoformat(body["timestamp"]), Job.from_json(body["data"]))
