"""SSE streams outlive a job's quiet spells: a read that waits longer than a socket timeout is not an error."""

import asyncio
import dataclasses
import time
from pathlib import Path

from services import start_redis_server

from api.config import ApiSettings
from api.main import create_services
from api.routes import events as events_route
from jobs.events import EventReader
from jobs.records import Job, JobStatus, input_key, new_job_id


class Connected:
    """A client that stays connected."""

    async def is_disconnected(self) -> bool:
        return False


def test_a_quiet_job_keeps_its_stream_and_gets_a_keep_alive(tmp_path: Path) -> None:
    with start_redis_server() as url:
        services = create_services(ApiSettings(api_keys="k" * 16, redis_url=url, storage_url=f"file://{tmp_path}"))
        # One blocking read of 7 s: longer than redis-py's 5 s asyncio default, which used to cut the stream.
        services = dataclasses.replace(services, events=EventReader(url, 7, services.jobs.store.keys))
        created_at = time.time()
        job_id = new_job_id(created_at)
        job = Job(
            id=job_id,
            owner="key-alice",
            status=JobStatus.QUEUED,
            settings={},
            input_key=input_key(job_id),
            created_at=created_at,
        )
        services.jobs.store.create(job, max_active=4)

        async def first_two_messages() -> list[str]:
            stream = events_route.event_stream(Connected(), services, job_id, "0")
            try:
                return [await stream.__anext__(), await asyncio.wait_for(stream.__anext__(), timeout=30)]
            finally:
                await stream.aclose()
                await services.events.close()

        queued, keep_alive = asyncio.run(first_two_messages())
    assert "event: job.queued" in queued
    assert keep_alive == ": keep-alive\n\n"
