"""Reading a job's event stream as it grows, for Server-Sent Events: asyncio, one client shared by all streams."""

import redis.asyncio

from jobs.records import Event, JobStatus
from jobs.store import Keys, event_from_redis


class EventReader:
    def __init__(self, redis_url: str, block_seconds: float, keys: Keys):
        self.keys = keys
        self.block_ms = int(block_seconds * 1000)
        # The socket timeout outlasts a blocking read that finds nothing (redis-py's asyncio default of
        # 5 s would cut every stream whose job is quiet for 5 s).
        self.redis = redis.asyncio.Redis.from_url(
            redis_url, decode_responses=True, socket_connect_timeout=2, socket_timeout=block_seconds + 10
        )

    async def read(self, job_id: str, after: str, count: int = 100) -> list[Event]:
        """The events after the entry id `after` ("0-0": from the start); waits up to block_seconds for one."""
        reply = await self.redis.xread({self.keys.events(job_id): after}, count=count, block=self.block_ms)
        return [event_from_redis(entry_id, fields) for entry_id, fields in reply[0][1]] if reply else []

    async def job_exists(self, job_id: str) -> bool:
        return bool(await self.redis.exists(self.keys.job(job_id)))

    async def read_now(self, job_id: str, after: str, count: int = 100) -> list[Event]:
        """The events after the entry id `after`, without waiting."""
        reply = await self.redis.xread({self.keys.events(job_id): after}, count=count)
        return [event_from_redis(entry_id, fields) for entry_id, fields in reply[0][1]] if reply else []

    async def job_status(self, job_id: str) -> JobStatus | None:
        """The job's status now; None once it is deleted."""
        status = await self.redis.hget(self.keys.job(job_id), "status")
        return JobStatus(status) if status else None

    async def close(self) -> None:
        await self.redis.aclose()
