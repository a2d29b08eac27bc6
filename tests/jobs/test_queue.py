"""Several services on one Redis: the key prefix keeps both their job records and Celery's queues apart."""

import json
import time

import redis
from services import start_redis_server

from jobs.queue import TaskQueue, create_celery
from jobs.records import Job, JobStatus, input_key, new_job_id
from jobs.settings import ServiceSettings
from jobs.store import open_store


def test_each_prefix_has_its_own_celery_queues() -> None:
    with start_redis_server() as url:
        for prefix in ("one:", "two:"):
            TaskQueue(create_celery(ServiceSettings(redis_url=url, redis_prefix=prefix))).render(f"job-of-{prefix}")
        client = redis.Redis.from_url(url, decode_responses=True)
        for prefix in ("one:", "two:"):
            (message,) = client.lrange(f"{prefix}render", 0, -1)
            assert json.loads(message)["headers"]["argsrepr"] == f"['job-of-{prefix}']"
        assert not client.exists("render")


def test_each_prefix_has_its_own_jobs() -> None:
    with start_redis_server() as url:
        one, two = (open_store(ServiceSettings(redis_url=url, redis_prefix=prefix)) for prefix in ("one:", "two:"))
        job_id = new_job_id(time.time())
        one.create(Job(job_id, "owner", JobStatus.QUEUED, {}, input_key(job_id), time.time()), max_active=1)
        assert one.get(job_id) is not None and two.get(job_id) is None
        assert two.list_for_owner("owner", 10) == [] and two.active_count("owner") == 0
        assert one.counters().queue_depth == 1 and two.counters().queue_depth == 0
