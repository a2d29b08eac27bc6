"""Python client of the paints-undo job service: one finished illustration in, a timelapse MP4 of how it might
have been drawn out.

    from paints_undo_client import Client

    with Client("http://127.0.0.1:8000", "my-key") as client:
        job = client.run("picture.png", on_progress=lambda event: print(f"{event.progress:.0%}"))
        client.download(job, "out/")
"""

from paints_undo_client._core import ImageInput, JobRef, __version__
from paints_undo_client.async_client import AsyncClient
from paints_undo_client.client import Client
from paints_undo_client.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    JobCanceledError,
    JobError,
    JobFailedError,
    NotFoundError,
    PaintsUndoError,
    RateLimitError,
    ServiceUnavailableError,
    WebhookVerificationError,
)
from paints_undo_client.models import (
    ErrorDetail,
    Event,
    EventType,
    Job,
    JobStatus,
    Keyframe,
    Output,
    OutputKind,
    ProgressEvent,
    RenderSettings,
    StatusEvent,
    TerminalEvent,
    Video,
    WebhookAttempt,
    WebhookEvent,
)
from paints_undo_client.webhooks import verify_webhook

__all__ = [
    "APIConnectionError",
    "APIError",
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "ErrorDetail",
    "Event",
    "EventType",
    "ImageInput",
    "InvalidRequestError",
    "Job",
    "JobCanceledError",
    "JobError",
    "JobFailedError",
    "JobRef",
    "JobStatus",
    "Keyframe",
    "NotFoundError",
    "Output",
    "OutputKind",
    "PaintsUndoError",
    "ProgressEvent",
    "RateLimitError",
    "RenderSettings",
    "ServiceUnavailableError",
    "StatusEvent",
    "TerminalEvent",
    "Video",
    "WebhookAttempt",
    "WebhookEvent",
    "WebhookVerificationError",
    "__version__",
    "verify_webhook",
]
