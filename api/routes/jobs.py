"""/v1/jobs: submit, read, list, cancel and delete jobs. A key sees only its own jobs (others' are 404).

HTTP only: each route reads the request, calls jobs.service and shapes the answer.
"""

from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Query, Response, UploadFile
from pydantic import BaseModel

from api.deps import OwnerDep, ServicesDep
from api.errors import ErrorResponse
from jobs.schemas import JobOut
from jobs.service import Submission

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

ERRORS = {status: {"model": ErrorResponse} for status in (401, 404, 409, 413, 415, 422, 429, 503)}


class JobList(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None


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
    data = image.file.read(services.settings.max_upload_bytes + 1)
    submission = Submission(data, settings, webhook_url, webhook_events, idempotency_key)
    job, _ = services.jobs.submit(owner, submission)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return services.jobs.view(job)


@router.get("", response_model=JobList, responses=ERRORS)
def list_jobs(
    services: ServicesDep,
    owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> JobList:
    """The caller's jobs, newest first."""
    jobs, next_cursor = services.jobs.list(owner, limit, cursor)
    return JobList(jobs=[services.jobs.view(job) for job in jobs], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobOut, responses=ERRORS)
def get_job(job_id: str, services: ServicesDep, owner: OwnerDep) -> JobOut:
    """The job as it is now; URLs are minted afresh on each read."""
    return services.jobs.view(services.jobs.get(owner, job_id))


@router.post("/{job_id}/cancel", response_model=JobOut, responses=ERRORS)
def cancel_job(job_id: str, services: ServicesDep, owner: OwnerDep) -> JobOut:
    """Cancel: a queued job never starts; a running one stops at its next sampler step. Idempotent."""
    return services.jobs.view(services.jobs.cancel(owner, job_id))


@router.delete("/{job_id}", status_code=204, responses=ERRORS)
def delete_job(job_id: str, services: ServicesDep, owner: OwnerDep) -> Response:
    """Cancel the job if it is unfinished, and delete its record and stored files."""
    services.jobs.delete(owner, job_id)
    return Response(status_code=204)
