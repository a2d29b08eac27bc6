"""What `Client` and `AsyncClient` share, without I/O: the submission's form, the retry policy, the event stream's
parser and the files of a job."""

import json
import mimetypes
import os
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Union

from paints_undo_client.errors import APIConnectionError, APIError, JobCanceledError, JobFailedError, PaintsUndoError
from paints_undo_client.models import Job, RenderSettings

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__version__ = "0.1.0"
USER_AGENT = f"paints-undo-client/{__version__}"

# A picture: a path, the file's bytes, an open binary file, or a PIL image (when Pillow is installed).
ImageInput = Union[str, "os.PathLike[str]", bytes, BinaryIO, "PILImage"]  # noqa: UP007 (forward references)
JobRef = str | Job  # a job id, or a job the client returned

# Retries: 429 and 503 after their Retry-After, else (and connection errors) exponential backoff with jitter.
RETRY_STATUSES = frozenset((429, 503))
BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 8.0
# The event stream sends a keep-alive comment every 15 s: a minute of silence is a dead connection.
STREAM_READ_TIMEOUT = 60.0

OCTET_STREAM = "application/octet-stream"
EXTENSIONS = {"video/mp4": ".mp4", "image/png": ".png", "image/webp": ".webp", "application/zip": ".zip"}


def job_id(job: JobRef) -> str:
    return job.id if isinstance(job, Job) else job


def finished(job: Job) -> Job:
    """The job when it succeeded; JobFailedError or JobCanceledError when it ended otherwise."""
    if job.status == "failed":
        raise JobFailedError(job)
    if job.status == "canceled":
        raise JobCanceledError(job)
    return job


def retry_delay(error: PaintsUndoError, attempt: int, max_retries: int) -> float | None:
    """Seconds to wait before retrying after `error` on try `attempt` (0 for the first), or None: do not retry.

    Every request of this client may be repeated safely (reads, cancel and delete are idempotent, and a submission
    carries an Idempotency-Key), so connection errors are retried as well as 429 and 503.
    """
    if attempt >= max_retries:
        return None
    if isinstance(error, APIError):
        if error.status not in RETRY_STATUSES:
            return None
        if error.retry_after is not None:
            return error.retry_after
    elif not isinstance(error, APIConnectionError):
        return None
    return min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2**attempt) * random.uniform(0.5, 1.0)


def image_part(image: ImageInput, name: str) -> tuple[str, bytes, str]:
    """(file name, bytes, content type) of a picture to upload; the server recognises the format by content."""
    if isinstance(image, bytes):
        return name, image, OCTET_STREAM
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        return path.name, path.read_bytes(), mimetypes.guess_type(path.name)[0] or OCTET_STREAM
    pil = sys.modules.get("PIL.Image")  # a PIL image means Pillow is imported; never import it ourselves
    if pil is not None and isinstance(image, pil.Image):
        buffer = BytesIO()
        image.save(buffer, format="PNG")
        return f"{name}.png", buffer.getvalue(), "image/png"
    if hasattr(image, "read"):
        return name, image.read(), OCTET_STREAM
    raise TypeError(f"an image must be a path, bytes, a binary file or a PIL image, not {type(image).__name__}")


def submission_form(
    image: ImageInput,
    keyframes: Sequence[ImageInput],
    settings: RenderSettings | Mapping[str, Any] | None,
    metadata: Mapping[str, str] | None,
    webhook_url: str | None,
    webhook_events: Sequence[str] | None,
) -> tuple[list[tuple[str, tuple[str, bytes, str]]], dict[str, str]]:
    """The multipart parts of POST /v1/jobs: (files, text fields). Files are read now, so a retry resends them."""
    files = [("image", image_part(image, "image"))]
    files += [("keyframe", image_part(keyframe, f"keyframe_{i:02d}")) for i, keyframe in enumerate(keyframes)]
    fields: dict[str, str] = {}
    if settings is not None:
        fields["settings"] = json.dumps(dict(settings))
    if metadata is not None:
        fields["metadata"] = json.dumps(dict(metadata))
    if webhook_url is not None:
        fields["webhook_url"] = webhook_url
    if webhook_events is not None:
        fields["webhook_events"] = ",".join(webhook_events)
    return files, fields


def job_files(job: Job) -> list[tuple[str, str]]:
    """(URL, file name) of each file of a finished job: the video, the other outputs, then the keyframes."""
    files = [(output.url, output.kind + extension(output.media_type)) for output in job.outputs]
    if job.video is not None and all(output.kind != "video" for output in job.outputs):
        files.insert(0, (job.video.url, "video.mp4"))
    files += [(k.url, f"keyframe_{k.index:02d}_undo{k.undo_step:03d}.png") for k in job.keyframes]
    return files


def extension(media_type: str) -> str:
    return EXTENSIONS.get(media_type) or mimetypes.guess_extension(media_type) or ""


@dataclass(frozen=True)
class Message:
    """One Server-Sent Events message."""

    id: str  # the last id the stream gave ("" before any)
    event: str
    data: str


class SSEDecoder:
    """Turns the lines of a text/event-stream into messages, as the HTML standard parses them.

    `last_id` is the id of the last complete message: an `id:` line counts only once its message is complete, so
    a stream cut in the middle of a message resumes before it.
    """

    def __init__(self, last_id: str | None = None) -> None:
        self.last_id = last_id  # Last-Event-ID for a resumed stream
        self._id = last_id
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> Message | None:
        """The message a blank line completes; None for any other line (fields, comments)."""
        if not line:
            self.last_id = self._id
            message = None
            if self._data:  # a block of only comments or ids is no message
                message = Message(self.last_id or "", self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return message
        if line.startswith(":"):
            return None  # a comment: the server's keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None
