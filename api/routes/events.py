"""GET /v1/jobs/{id}/events: a job's events as Server-Sent Events, resumable, ending after the terminal one."""

import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import OwnerDep, Services, ServicesDep
from api.openapi import error_responses, sse_response
from jobs.errors import ErrorCode, InvalidRequest
from jobs.records import Event, EventType

router = APIRouter(prefix="/v1/jobs", tags=["events"])

# A quiet stream gets a comment this often, so proxies and clients see it is alive.
KEEPALIVE_SECONDS = 15.0
# A Redis stream entry id: two unsigned 64-bit numbers.
EVENT_ID = re.compile(r"(\d{1,20})-(\d{1,20})")
MAX_ID_PART = 2**64 - 1


def parse_last_event_id(value: str) -> str:
    """The Last-Event-ID header as a stream entry id; InvalidRequest (invalid_last_event_id) when it is not one."""
    match = EVENT_ID.fullmatch(value)
    if match is None or any(int(part) > MAX_ID_PART for part in match.groups()):
        message = f"Last-Event-ID must be an event id as sent in the stream (like 1767225600000-0), not {value[:40]!r}"
        raise InvalidRequest(ErrorCode.INVALID_LAST_EVENT_ID, message)
    return value


def sse_message(event: Event, services: Services, metadata: dict[str, str]) -> str:
    data: dict[str, Any] = dict(event.data)
    if event.type == EventType.KEYFRAME:
        # The stored key becomes a URL minted now, like the job object's.
        data["url"] = services.jobs.storage.url(data.pop("key"), services.settings.url_expiry_seconds)
    data["metadata"] = metadata
    return f"id: {event.id}\nevent: {event.type}\ndata: {json.dumps(data)}\n\n"


async def event_stream(
    request: Request, services: Services, job_id: str, after: str, metadata: dict[str, str] | None = None
) -> AsyncIterator[str]:
    reader = services.events
    metadata = metadata or {}
    while not await request.is_disconnected():
        events = await reader.read(job_id, after)
        if not events:
            status = await reader.job_status(job_id)
            if status is None or status.is_terminal():
                return  # deleted, or finished with nothing after `after`
            yield ": keep-alive\n\n"
            continue
        for event in events:
            if event.type.is_terminal():
                yield await job_message(event, services, job_id, metadata)
                return
            yield sse_message(event, services, metadata)
            after = event.id


async def job_message(event: Event, services: Services, job_id: str, metadata: dict[str, str]) -> str:
    """A terminal event, carrying the job as GET returns it now (video included, URLs minted now)."""

    def view() -> dict[str, Any] | None:
        job = services.jobs.store.get(job_id)
        return services.jobs.view(job).model_dump(mode="json") if job else None

    job = await run_in_threadpool(view)
    return sse_message(Event(event.id, event.type, {**event.data, "job": job}), services, metadata)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: sse_response(),
        204: {
            "description": "Resumed (Last-Event-ID) stream of a finished job with nothing after that id: "
            "nothing more will come; EventSource stops reconnecting."
        },
        **error_responses(
            (401, [ErrorCode.MISSING_API_KEY, ErrorCode.INVALID_API_KEY]),
            (404, [ErrorCode.JOB_NOT_FOUND]),
            (422, [ErrorCode.INVALID_LAST_EVENT_ID]),
            (503, [ErrorCode.SERVICE_UNAVAILABLE]),
        ),
    },
)
async def job_events(
    job_id: str,
    request: Request,
    services: ServicesDep,
    owner: OwnerDep,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="Resume after this event id (EventSource sends it when it reconnects).",
            examples=["1767225600000-0"],
        ),
    ] = None,
) -> Response:
    """The job's events as Server-Sent Events: every event from the start, or those after Last-Event-ID.

    Each message has an `id` (resume with it as Last-Event-ID), an `event` (its type) and JSON `data`; the
    schema of `data` per type is in the 200 response. The stream ends after the terminal event (job.succeeded,
    job.failed or job.canceled), whose `data.job` is the job as GET returns it, video included. A quiet stream
    gets a `: keep-alive` comment every 15 s. A resumed stream of a finished job with nothing after
    Last-Event-ID answers 204 (EventSource then stops reconnecting); an id past the last event of an unfinished
    job waits for the next one.
    """
    after = "0-0" if last_event_id is None else parse_last_event_id(last_event_id)
    job = await run_in_threadpool(services.jobs.get, owner, job_id)
    if last_event_id is not None and job.status.is_terminal() and not await services.events.read_now(job_id, after):
        return Response(status_code=204)
    return StreamingResponse(
        event_stream(request, services, job_id, after, job.metadata),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
