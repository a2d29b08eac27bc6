"""/v1/jobs: submit, read, list, cancel and delete jobs. A key sees only its own jobs (others' are 404)."""

import hashlib
import json
import time
from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Query, Response, UploadFile
from pydantic import BaseModel, ValidationError

from api.deps import OwnerDep, Services, ServicesDep
from api.errors import ApiError, ErrorResponse, not_found
from api.uploads import check_image
from jobs.queue import RENDER_TASK
from jobs.schemas import JobOut, job_view
from jobs.store import (
    EventType,
    IdempotencyConflict,
    Job,
    JobStatus,
    TooManyActiveJobs,
    input_key,
    job_prefix,
    new_job_id,
)
from jobs.webhooks import WebhookError, check_target, parse_events
from model_core.settings import RenderSettings, describe_validation_error

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

ERRORS = {status: {"model": ErrorResponse} for status in (401, 404, 409, 413, 415, 422, 429, 503)}
MAX_IDEMPOTENCY_KEY = 255


class JobList(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None


def view(services: Services, job: Job) -> JobOut:
    position = services.store.queue_position(job.id) if job.status == JobStatus.QUEUED else None
    return job_view(job, services.storage, services.settings.url_expiry_seconds, position)


def owned_job(services: Services, owner: str, job_id: str) -> Job:
    job = services.store.get(job_id, owner=owner)
    if job is None:
        raise not_found()
    return job


def parse_settings(text: str | None) -> RenderSettings:
    if not text:
        return RenderSettings()
    try:
        return RenderSettings.model_validate_json(text)
    except ValidationError as err:
        raise ApiError(422, "invalid_settings", describe_validation_error(err)) from err


@router.post("", status_code=202, response_model=JobOut, responses=ERRORS)
def create_job(
    response: Response,
    services: ServicesDep,
    owner: OwnerDep,
    image: Annotated[UploadFile, File(description="The finished illustration: PNG, JPEG or WebP (by content).")],
    settings: Annotated[str | None, Form(description="RenderSettings as a JSON object; defaults apply.")] = None,
    webhook_url: Annotated[str | None, Form(description="http(s) URL that receives signed job events.")] = None,
    webhook_events: Annotated[
        str | None, Form(description="Comma-separated subset of job.started, job.keyframe, job.succeeded, ...")
    ] = None,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", description="Repeating a request with it returns the same job.")
    ] = None,
) -> JobOut:
    """Accept an image for rendering: answers 202 with the queued job and its Location."""
    limits = services.settings
    data = image.file.read(limits.max_upload_bytes + 1)
    content_type = check_image(data, limits.max_upload_bytes, limits.max_pixels)
    render_settings = parse_settings(settings)
    events: tuple[str, ...] = ()
    if webhook_url is not None:
        if limits.webhook_secret is None:
            raise ApiError(422, "webhooks_not_configured", "this server has no PAINTS_UNDO_WEBHOOK_SECRET")
        try:
            check_target(webhook_url, limits.webhook_allowed_hosts)
            events = parse_events(webhook_events)
        except WebhookError as err:
            raise ApiError(422, err.code, err.message) from err
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise ApiError(422, "invalid_idempotency_key", f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")

    now = time.time()
    job_id = new_job_id(now)
    request_hash = hashlib.sha256(
        data + json.dumps([render_settings.model_dump(mode="json"), webhook_url, events]).encode()
    ).hexdigest()
    job = Job(
        id=job_id,
        owner=owner,
        status=JobStatus.QUEUED,
        settings=render_settings.model_dump(mode="json"),
        input_key=input_key(job_id),
        created_at=now,
        webhook_url=webhook_url,
        webhook_events=events,
        request_hash=request_hash,
    )
    idempotency_hash = hashlib.sha256(idempotency_key.encode()).hexdigest() if idempotency_key else None
    if idempotency_hash and (earlier := services.store.find_idempotent(owner, idempotency_hash)):
        return answer_existing(services, response, earlier, request_hash)
    # The input is stored before the job exists, so a worker never sees a job without its image.
    services.storage.put(job.input_key, data, content_type)
    try:
        stored, created = services.store.create(
            job, max_active=limits.max_active_jobs, idempotency_hash=idempotency_hash
        )
    except TooManyActiveJobs as err:
        services.storage.delete_prefix(job_prefix(job_id))
        raise ApiError(429, "too_many_active_jobs", str(err), {"Retry-After": "30"}) from err
    except IdempotencyConflict as err:
        services.storage.delete_prefix(job_prefix(job_id))
        raise idempotency_conflict() from err
    if not created:
        services.storage.delete_prefix(job_prefix(job_id))
        return answer_existing(services, response, stored, request_hash)
    services.celery.send_task(RENDER_TASK, args=[job_id])
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return view(services, stored)


def idempotency_conflict() -> ApiError:
    return ApiError(409, "idempotency_key_reused", "this Idempotency-Key was used for a different request")


def answer_existing(services: Services, response: Response, job: Job, request_hash: str) -> JobOut:
    if job.request_hash != request_hash:
        raise idempotency_conflict()
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return view(services, job)


@router.get("", response_model=JobList, responses=ERRORS)
def list_jobs(
    services: ServicesDep,
    owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> JobList:
    """The caller's jobs, newest first."""
    jobs = services.store.list_for_owner(owner, limit, before=cursor)
    next_cursor = jobs[-1].id if len(jobs) == limit else None
    return JobList(jobs=[view(services, job) for job in jobs], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobOut, responses=ERRORS)
def get_job(job_id: str, services: ServicesDep, owner: OwnerDep) -> JobOut:
    """The job as it is now; URLs are minted afresh on each read."""
    return view(services, owned_job(services, owner, job_id))


@router.post("/{job_id}/cancel", response_model=JobOut, responses=ERRORS)
def cancel_job(job_id: str, services: ServicesDep, owner: OwnerDep) -> JobOut:
    """Cancel: a queued job never starts; a running one stops at its next sampler step. Idempotent."""
    owned_job(services, owner, job_id)
    job, ended = services.store.request_cancel(job_id)
    if job is None:
        raise not_found()
    if ended:
        services.notifier.notify(job, EventType.CANCELED)
    return view(services, job)


@router.delete("/{job_id}", status_code=204, responses=ERRORS)
def delete_job(job_id: str, services: ServicesDep, owner: OwnerDep) -> Response:
    """Cancel the job if it is unfinished, and delete its record and stored files."""
    owned_job(services, owner, job_id)
    services.store.request_cancel(job_id)
    services.storage.delete_prefix(job_prefix(job_id))
    services.store.delete(job_id)
    return Response(status_code=204)
