"""/v1/jobs: submit, read, list, cancel and delete jobs. A key sees only its own jobs (others' are 404).

HTTP only: each route reads the request, calls jobs.service and shapes the answer.
"""

import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from api.deps import OwnerDep, ServicesDep
from api.openapi import AUTH_ERRORS, REF, error_responses
from jobs.errors import ErrorCode, InvalidRequest
from jobs.schemas import MAX_METADATA_KEYS, MAX_METADATA_LENGTH, METADATA_DESCRIPTION, JobOut
from jobs.service import Submission
from jobs.webhooks import WEBHOOK_EVENTS
from model_core.settings import MAX_KEYFRAMES

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JOB_ID = re.compile(r"job_[0-9a-f]{28}")
TEXT_FIELDS = ("settings", "webhook_url", "webhook_events", "metadata")
FORM_FIELDS = ("image", "keyframe", *TEXT_FIELDS)
REPEATABLE_FIELDS = {"keyframe"}
UNAVAILABLE = (503, [ErrorCode.SERVICE_UNAVAILABLE])
NOT_FOUND = (404, [ErrorCode.JOB_NOT_FOUND])

SUBMIT_ERRORS = error_responses(
    AUTH_ERRORS,
    (409, [ErrorCode.IDEMPOTENCY_KEY_REUSED]),
    (413, [ErrorCode.UPLOAD_TOO_LARGE]),
    (415, [ErrorCode.UNSUPPORTED_IMAGE_TYPE]),
    (
        422,
        [
            ErrorCode.INVALID_REQUEST,
            ErrorCode.INVALID_IMAGE,
            ErrorCode.IMAGE_TOO_LARGE,
            ErrorCode.INVALID_SETTINGS,
            ErrorCode.INVALID_METADATA,
            ErrorCode.INVALID_WEBHOOK_URL,
            ErrorCode.WEBHOOK_URL_FORBIDDEN,
            ErrorCode.INVALID_WEBHOOK_EVENTS,
            ErrorCode.WEBHOOKS_NOT_CONFIGURED,
            ErrorCode.INVALID_IDEMPOTENCY_KEY,
        ],
    ),
    (429, [ErrorCode.TOO_MANY_ACTIVE_JOBS]),
    (503, [ErrorCode.SERVICE_UNAVAILABLE, ErrorCode.STORAGE_UNAVAILABLE]),
)

# The multipart body, described by hand: the route reads the form itself (see read_form).
SUBMIT_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "additionalProperties": False,
                "properties": {
                    "image": {
                        "type": "string",
                        "format": "binary",
                        "contentMediaType": "application/octet-stream",
                        "description": "The finished illustration: PNG, JPEG or WebP, recognised by its content.",
                    },
                    "keyframe": {
                        "type": "array",
                        "maxItems": MAX_KEYFRAMES,
                        "items": {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream"},
                        "description": "Optional, repeated: the artist's own earlier states of the picture (autosaves, "
                        "flattened layers), earliest first, each checked and limited as `image` is; the picture and "
                        "its keyframes together at most PAINTS_UNDO_MAX_REQUEST_BYTES (64 MiB by default). The video "
                        "then runs blank canvas → these → the picture; the keyframe model does not run, and "
                        "settings.undo_steps must be absent. Each is scaled and center-cropped to the keyframe size "
                        "like the picture.",
                    },
                    "settings": {
                        "$ref": REF.format(model="RenderSettings"),
                        "description": "RenderSettings as a JSON object (a text part, or a file part of JSON); "
                        "omitted fields take their defaults.",
                    },
                    "webhook_url": {
                        "type": "string",
                        "format": "uri",
                        "maxLength": 2048,
                        "description": "http(s) URL that receives the job's signed webhooks (see `webhooks`). "
                        "Needs PAINTS_UNDO_WEBHOOK_SECRET on the server. Example: https://app.example.com/hooks/pu",
                        "examples": [""],  # Swagger UI's "Try it out" sends an empty field as absent
                    },
                    "webhook_events": {
                        "type": "string",
                        "description": "Comma-separated events to send to webhook_url, of "
                        f"{', '.join(WEBHOOK_EVENTS)}; default: all of them. Example: job.succeeded,job.failed",
                        "examples": [""],
                    },
                    "metadata": {
                        "type": "object",
                        "maxProperties": MAX_METADATA_KEYS,
                        "propertyNames": {"minLength": 1, "maxLength": MAX_METADATA_LENGTH},
                        "additionalProperties": {"type": "string", "maxLength": MAX_METADATA_LENGTH},
                        "description": f"A JSON object. {METADATA_DESCRIPTION}",
                        "examples": [{"artwork_id": "art_42", "user_id": "u_7"}],
                    },
                },
            },
            "encoding": {
                "image": {"contentType": "image/png, image/jpeg, image/webp"},
                "keyframe": {"contentType": "image/png, image/jpeg, image/webp"},
                "settings": {"contentType": "application/json"},
                "metadata": {"contentType": "application/json"},
            },
        }
    },
}


class JobList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"jobs": JobOut.model_config["json_schema_extra"]["examples"], "next_cursor": None}]
        }  # type: ignore[index]
    )

    jobs: list[JobOut] = Field(description="Newest first.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page.",
        examples=["job_0193a1b2c3d4e5f60718293a4b5c"],
    )


@dataclass(frozen=True)
class SubmitForm:
    """The multipart body's parts: each image's bytes (at most max_image_bytes + 1 of them) and the text fields."""

    image: bytes
    keyframes: tuple[bytes, ...]
    texts: dict[str, str | None]


async def read_form(request: Request, max_image_bytes: int) -> SubmitForm:
    """The parts of the multipart body. `keyframe` may repeat; every other field comes at most once, and no
    others: a repeated or unknown part is an InvalidRequest naming it.
    """
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise InvalidRequest(ErrorCode.INVALID_REQUEST, "send the job as multipart/form-data with an `image` part")
    try:
        # One more file than allowed, so that too many keyframes get our own message.
        form = await request.form(max_files=MAX_KEYFRAMES + 2, max_fields=2 * len(FORM_FIELDS))
    except HTTPException as err:
        if err.status_code != 400:  # 413 from the body size limit goes on as it is
            raise
        raise InvalidRequest(ErrorCode.INVALID_REQUEST, f"the multipart body cannot be read: {err.detail}") from err
    try:
        return await form_fields(form, max_image_bytes)
    finally:
        await form.close()


async def form_fields(form: FormData, max_image_bytes: int) -> SubmitForm:
    names = [name for name, _ in form.multi_items()]
    if unknown := sorted(set(names) - set(FORM_FIELDS)):
        message = f"unknown form field(s) {', '.join(map(repr, unknown))}; the fields are {', '.join(FORM_FIELDS)}"
        raise InvalidRequest(ErrorCode.INVALID_REQUEST, message)
    for name in set(FORM_FIELDS) - REPEATABLE_FIELDS:
        if (count := names.count(name)) > 1:
            message = f"{name}: the form has {count} parts named {name!r}; send each field once"
            raise InvalidRequest(ErrorCode.INVALID_REQUEST, message)
    if (count := names.count("keyframe")) > MAX_KEYFRAMES:
        raise InvalidRequest(ErrorCode.INVALID_REQUEST, f"keyframe: {count} parts; at most {MAX_KEYFRAMES}")
    image = form.get("image")
    if not isinstance(image, UploadFile):
        message = "image: a file part is required" if image is None else "image: must be a file part, not text"
        raise InvalidRequest(ErrorCode.INVALID_REQUEST, message)
    keyframes = form.getlist("keyframe")
    if not all(isinstance(keyframe, UploadFile) for keyframe in keyframes):
        raise InvalidRequest(ErrorCode.INVALID_REQUEST, "keyframe: each must be a file part, not text")
    texts: dict[str, str | None] = {}
    for name in TEXT_FIELDS:
        value = form.get(name)
        if isinstance(value, UploadFile):  # e.g. settings sent as a JSON file part
            try:
                value = (await value.read()).decode()
            except UnicodeDecodeError as err:
                raise InvalidRequest(ErrorCode.INVALID_REQUEST, f"{name}: must be UTF-8 text") from err
        texts[name] = value if value and value.strip() else None  # an empty field is an absent one, as in HTML forms
    return SubmitForm(
        image=await image.read(max_image_bytes + 1),
        keyframes=tuple([await keyframe.read(max_image_bytes + 1) for keyframe in keyframes]),
        texts=texts,
    )


@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    responses={
        202: {
            "description": "Accepted: the queued job (or, for a repeated Idempotency-Key, the earlier job).",
            "headers": {"Location": {"description": "/v1/jobs/{id}", "schema": {"type": "string"}}},
        },
        **SUBMIT_ERRORS,
    },
    openapi_extra={"requestBody": SUBMIT_BODY},
)
async def create_job(
    request: Request,
    response: Response,
    services: ServicesDep,
    owner: OwnerDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="1..255 characters. Repeating the same request with it returns the same job (while that job is "
            "kept); another request with it is a 409.",
        ),
    ] = None,
) -> JobOut:
    """Submit an image for rendering: answers 202 with the queued job and its Location.

    The form's parts: `image` (required), `keyframe` (optional, repeated: the artist's own earlier states, earliest
    first), `settings` (RenderSettings as JSON), `webhook_url`, `webhook_events`, `metadata` (JSON object), each
    other than `keyframe` at most once (an empty one counts as absent); any other part is refused.
    Keyframes are `settings.width` x `settings.height`, by default "auto": about 512x640 pixels in the aspect
    ratio nearest the picture's; the picture is center-cropped to that aspect. At the active-jobs limit the
    request is refused (429) before its body is read.
    """
    await run_in_threadpool(services.jobs.check_capacity, owner, idempotency_key)
    form = await read_form(request, services.settings.max_upload_bytes)
    submission = Submission(form.image, idempotency_key=idempotency_key, keyframes=form.keyframes, **form.texts)
    job, _ = await run_in_threadpool(services.jobs.submit, owner, submission)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return await run_in_threadpool(services.jobs.view, job)


@router.get(
    "",
    response_model=JobList,
    responses=error_responses(AUTH_ERRORS, (422, [ErrorCode.INVALID_CURSOR, ErrorCode.INVALID_REQUEST]), UNAVAILABLE),
)
def list_jobs(
    services: ServicesDep,
    owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Jobs per page.")] = 20,
    cursor: Annotated[
        str | None,
        Query(
            description="next_cursor of the previous page (a job id).", examples=["job_0193a1b2c3d4e5f60718293a4b5c"]
        ),
    ] = None,
) -> JobList:
    """The caller's jobs, newest first, a page at a time."""
    if cursor is not None and not JOB_ID.fullmatch(cursor):
        raise InvalidRequest(ErrorCode.INVALID_CURSOR, f"cursor must be a job id (a next_cursor), not {cursor[:40]!r}")
    jobs, next_cursor = services.jobs.list(owner, limit, cursor)
    return JobList(jobs=[services.jobs.view(job) for job in jobs], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobOut, responses=error_responses(AUTH_ERRORS, NOT_FOUND, UNAVAILABLE))
def get_job(job_id: str, services: ServicesDep, owner: OwnerDep) -> JobOut:
    """The job as it is now; URLs are minted afresh on each read."""
    return services.jobs.view(services.jobs.get(owner, job_id))


@router.post("/{job_id}/cancel", response_model=JobOut, responses=error_responses(AUTH_ERRORS, NOT_FOUND, UNAVAILABLE))
def cancel_job(job_id: str, services: ServicesDep, owner: OwnerDep) -> JobOut:
    """Cancel: a queued job ends canceled now; a running one shows `cancel_requested: true` and stops at its next
    sampler step, then ends canceled (watch the events or poll). A finished job is unchanged. Idempotent."""
    return services.jobs.view(services.jobs.cancel(owner, job_id))


@router.delete(
    "/{job_id}",
    status_code=204,
    responses={
        204: {"description": "Deleted."},
        **error_responses(
            AUTH_ERRORS, NOT_FOUND, (503, [ErrorCode.SERVICE_UNAVAILABLE, ErrorCode.STORAGE_UNAVAILABLE])
        ),
    },
)
def delete_job(job_id: str, services: ServicesDep, owner: OwnerDep) -> Response:
    """Cancel the job if it is unfinished, and delete its record and stored files."""
    services.jobs.delete(owner, job_id)
    return Response(status_code=204)
