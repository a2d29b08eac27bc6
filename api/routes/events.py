"""GET /v1/jobs/{id}/events: a job's events as Server-Sent Events, resumable, ending after the terminal one."""

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import OwnerDep, Services, ServicesDep
from api.errors import ErrorResponse
from jobs.records import Event, EventType

router = APIRouter(prefix="/v1/jobs", tags=["events"])

# A quiet stream gets a comment this often, so proxies and clients see it is alive.
KEEPALIVE_SECONDS = 15.0


def sse_message(event: Event, services: Services) -> str:
    data = dict(event.data)
    if event.type == EventType.KEYFRAME:
        # The stored key becomes a URL minted now, like the job object's.
        data["url"] = services.jobs.storage.url(data.pop("key"), services.settings.url_expiry_seconds)
    return f"id: {event.id}\nevent: {event.type}\ndata: {json.dumps(data)}\n\n"


async def event_stream(request: Request, services: Services, job_id: str, after: str) -> AsyncIterator[str]:
    reader = services.events
    while not await request.is_disconnected():
        events = await reader.read(job_id, after)
        if not events:
            if not await reader.job_exists(job_id):
                return  # deleted
            yield ": keep-alive\n\n"
            continue
        for event in events:
            yield sse_message(event, services)
            after = event.id
            if event.type.is_terminal():
                return


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "`id`, `event` (type) and JSON `data` per event."},
        401: {"model": ErrorResponse},
        404: {"model": ErrorResponse},
    },
)
async def job_events(
    job_id: str,
    request: Request,
    services: ServicesDep,
    owner: OwnerDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", pattern=r"^\d+-\d+$")] = None,
) -> StreamingResponse:
    """Every event of the job from the start (or after Last-Event-ID); the stream ends after the terminal event.

    Types: job.queued, job.started, stage.started, stage.finished, job.progress, job.prompt, job.keyframe,
    job.succeeded, job.failed, job.canceled. Each carries `progress` and `eta_seconds` while running.
    """
    await run_in_threadpool(services.jobs.get, owner, job_id)
    return StreamingResponse(
        event_stream(request, services, job_id, last_event_id or "0-0"),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
