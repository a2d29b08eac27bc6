"""What a client can do with jobs: submit, read, list, cancel and delete. The API's routes are thin shells
around `JobService`; every check raises a domain error (jobs.errors) that the API maps to HTTP.
"""

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis
from pydantic import ValidationError

from jobs.errors import (
    ErrorCode,
    IdempotencyConflict,
    InvalidRequest,
    JobNotFound,
    PayloadTooLarge,
    ServiceError,
    ServiceUnavailable,
    TooManyActiveJobs,
)
from jobs.notify import WebhookNotifier
from jobs.queue import TaskQueue
from jobs.records import EventType, Job, JobStatus, input_key, job_prefix, new_job_id, supplied_keyframe_key
from jobs.schemas import JobOut, job_view, parse_metadata
from jobs.settings import ServiceSettings
from jobs.storage import Storage
from jobs.store import JobStore
from jobs.uploads import check_image
from jobs.webhooks import check_target, parse_events
from model_core.settings import MAX_KEYFRAMES, RenderSettings, describe_validation_error

log = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True)
class Submission:
    """A job request as it arrived: the image's bytes and the form's text fields, not yet checked."""

    image: bytes
    settings: str | None = None
    webhook_url: str | None = None
    webhook_events: str | None = None
    idempotency_key: str | None = None
    metadata: str | None = None  # a JSON object of the client's own string keys and values
    keyframes: tuple[bytes, ...] = ()  # the artist's own earlier states, earliest first


@dataclass(frozen=True)
class UploadedImage:
    data: bytes
    content_type: str


@dataclass(frozen=True)
class CheckedSubmission:
    image: bytes
    content_type: str
    keyframes: tuple[UploadedImage, ...]
    settings: RenderSettings
    webhook_url: str | None
    webhook_events: tuple[str, ...]
    idempotency_hash: str | None
    metadata: dict[str, str]

    @property
    def request_hash(self) -> str:
        """Identifies the request, so a repeated Idempotency-Key with another request is told apart."""
        fields: list[Any] = [self.settings.model_dump(mode="json"), self.webhook_url, self.webhook_events]
        if self.metadata:  # absent when empty, so hashes of requests without metadata stay as they were
            fields.append(self.metadata)
        if self.keyframes:  # likewise
            fields.append([hashlib.sha256(keyframe.data).hexdigest() for keyframe in self.keyframes])
        return hashlib.sha256(self.image + json.dumps(fields).encode()).hexdigest()


class JobService:
    def __init__(
        self,
        settings: ServiceSettings,
        store: JobStore,
        storage: Storage,
        queue: TaskQueue,
        notifier: WebhookNotifier,
    ):
        self.settings = settings
        self.store = store
        self.storage = storage
        self.queue = queue
        self.notifier = notifier

    # --- submitting ----------------------------------------------------------------------------

    def check(self, submission: Submission) -> CheckedSubmission:
        """Every check of a submission, before anything is stored."""
        limits = self.settings.max_upload_bytes, self.settings.max_pixels
        content_type = check_image(submission.image, *limits)
        keyframes = self.check_keyframes(submission)
        events: tuple[str, ...] = ()
        if submission.webhook_url is not None:
            if self.settings.webhook_secret is None:
                raise InvalidRequest(ErrorCode.WEBHOOKS_NOT_CONFIGURED, "this server has no PAINTS_UNDO_WEBHOOK_SECRET")
            check_target(submission.webhook_url, self.settings.webhook_allowed_hosts)
            events = parse_events(submission.webhook_events)
        key = submission.idempotency_key
        if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
            message = f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
            raise InvalidRequest(ErrorCode.INVALID_IDEMPOTENCY_KEY, message)
        return CheckedSubmission(
            image=submission.image,
            content_type=content_type,
            keyframes=keyframes,
            settings=settings_for(parse_settings(submission.settings), supplied_keyframes=bool(keyframes)),
            webhook_url=submission.webhook_url,
            webhook_events=events,
            idempotency_hash=hashlib.sha256(key.encode()).hexdigest() if key else None,
            metadata=parse_metadata(submission.metadata),
        )

    def check_keyframes(self, submission: Submission) -> tuple[UploadedImage, ...]:
        """The supplied keyframes, each checked as the picture is; at most MAX_KEYFRAMES, and with the picture at
        most max_request_bytes in all."""
        if len(submission.keyframes) > MAX_KEYFRAMES:
            message = f"{len(submission.keyframes)} keyframe parts; at most {MAX_KEYFRAMES}"
            raise InvalidRequest(ErrorCode.INVALID_REQUEST, message)
        total = len(submission.image) + sum(map(len, submission.keyframes))
        if total > self.settings.max_request_bytes:
            message = f"the picture and keyframes are {total} bytes; the limit is {self.settings.max_request_bytes}"
            raise PayloadTooLarge(ErrorCode.UPLOAD_TOO_LARGE, message)
        limits = self.settings.max_upload_bytes, self.settings.max_pixels
        return tuple(
            UploadedImage(data, check_image(data, *limits, name=f"keyframe {number}"))
            for number, data in enumerate(submission.keyframes, start=1)
        )

    def check_capacity(self, owner: str, idempotency_key: str | None = None) -> None:
        """TooManyActiveJobs when the owner is at the active-jobs limit: a cheap check before the upload is read.

        A repeated Idempotency-Key passes (its answer is the earlier job); `JobStore.create` checks again
        atomically, for submissions that race.
        """
        if idempotency_key and 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
            if self.store.find_idempotent(owner, hashlib.sha256(idempotency_key.encode()).hexdigest()):
                return
        if self.store.active_count(owner) >= self.settings.max_active_jobs:
            raise TooManyActiveJobs(self.settings.max_active_jobs)

    def submit(self, owner: str, submission: Submission) -> tuple[Job, bool]:
        """Check, store the input, record the job and queue it; returns (job, True when created now).

        A repeated Idempotency-Key returns the earlier job (False). Raises the domain errors of `check`,
        TooManyActiveJobs and IdempotencyConflict; whatever fails, no input file is left behind.
        """
        checked = self.check(submission)
        if checked.idempotency_hash and (earlier := self.store.find_idempotent(owner, checked.idempotency_hash)):
            return same_request(earlier, checked), False
        now = time.time()
        job_id = new_job_id(now)
        keyframe_keys = tuple(supplied_keyframe_key(job_id, index) for index in range(len(checked.keyframes)))
        job = Job(
            id=job_id,
            owner=owner,
            status=JobStatus.QUEUED,
            settings=checked.settings.model_dump(mode="json"),
            input_key=input_key(job_id),
            created_at=now,
            webhook_url=checked.webhook_url,
            webhook_events=checked.webhook_events,
            request_hash=checked.request_hash,
            metadata=checked.metadata,
            supplied_keyframes=keyframe_keys,
        )
        # The inputs are stored before the job exists, so a worker never sees a job without its images.
        try:
            self.storage.put(job.input_key, checked.image, checked.content_type)
            for key, keyframe in zip(keyframe_keys, checked.keyframes, strict=True):
                self.storage.put(key, keyframe.data, keyframe.content_type)
        except Exception:
            self.storage.delete_prefix(job_prefix(job_id))
            raise
        try:
            stored, created = self.store.create(
                job, max_active=self.settings.max_active_jobs, idempotency_hash=checked.idempotency_hash
            )
            if created:
                self.queue.render(job_id)
        except Exception as err:
            self._undo(job_id)  # all or nothing: neither a record without its message nor a file without a record
            if isinstance(err, ServiceError | redis.RedisError):
                raise
            log.error("job %s: the render message could not be sent (%s); the submission is undone", job_id, err)
            message = "the job queue is unreachable; retry later"
            raise ServiceUnavailable(ErrorCode.SERVICE_UNAVAILABLE, message, {"Retry-After": "10"}) from err
        if not created:
            self.storage.delete_prefix(job_prefix(job_id))
            return same_request(stored, checked), False
        try:
            self.store.mark_sent(job_id)
        except redis.RedisError:  # the reaper sends it once more; a duplicate message starts nothing twice
            log.warning("job %s: could not record that its message was sent", job_id)
        return stored, True

    def _undo(self, job_id: str) -> None:
        """Remove what a failed submission made: its input file and, if it was made, its record."""
        try:
            self.storage.delete_prefix(job_prefix(job_id))
        finally:
            self.store.delete(job_id)

    # --- reading -------------------------------------------------------------------------------

    def get(self, owner: str, job_id: str) -> Job:
        job = self.store.get(job_id, owner=owner)
        if job is None:
            raise JobNotFound()
        return job

    def list(self, owner: str, limit: int, cursor: str | None) -> tuple[list[Job], str | None]:
        """A page of the owner's jobs, newest first, and the cursor of the next page (None on the last)."""
        jobs = self.store.list_for_owner(owner, limit + 1, before=cursor)  # one more tells if a next page exists
        return jobs[:limit], jobs[limit - 1].id if len(jobs) > limit else None

    def view(self, job: Job) -> JobOut:
        """The job as clients see it, with URLs minted now."""
        position = self.store.queue_position(job.id) if job.status == JobStatus.QUEUED else None
        return job_view(job, self.storage, self.settings.url_expiry_seconds, position)

    # --- changing ------------------------------------------------------------------------------

    def cancel(self, owner: str, job_id: str) -> Job:
        """A queued job ends canceled now; a running one stops at its next sampler step. Idempotent."""
        self.get(owner, job_id)
        job, ended = self.store.request_cancel(job_id)
        if job is None:
            raise JobNotFound()
        if ended:
            self.notifier.notify(job, EventType.CANCELED)
        return job

    def delete(self, owner: str, job_id: str) -> None:
        """Cancel the job if unfinished, then delete its record and stored files."""
        self.get(owner, job_id)
        self.store.request_cancel(job_id)
        self.storage.delete_prefix(job_prefix(job_id))
        self.store.delete(job_id)


def parse_settings(text: str | None) -> RenderSettings:
    if not text:
        return RenderSettings()
    try:
        return RenderSettings.model_validate_json(text)
    except ValidationError as err:
        raise InvalidRequest(ErrorCode.INVALID_SETTINGS, describe_validation_error(err)) from err


def settings_for(settings: RenderSettings, *, supplied_keyframes: bool) -> RenderSettings:
    """The settings a job records: the undo steps filled in when the keyframe model runs (the job shows the steps
    it used); InvalidRequest when they contradict supplied keyframes."""
    if not supplied_keyframes:
        return settings.with_undo_steps()
    if settings.undo_steps is not None:
        message = "undo_steps: must be absent when keyframes are supplied (the keyframe model, whose steps they are, "
        raise InvalidRequest(ErrorCode.INVALID_SETTINGS, message + "does not run)")
    if settings.stop_after == "keyframes":
        message = 'stop_after: "keyframes" with supplied keyframes has nothing to do; drop one of them'
        raise InvalidRequest(ErrorCode.INVALID_SETTINGS, message)
    return settings


def same_request(job: Job, checked: CheckedSubmission) -> Job:
    """The earlier job of a repeated Idempotency-Key, when the request is the same one."""
    if job.request_hash != checked.request_hash:
        raise IdempotencyConflict()
    return job
