"""The reaper's pass (worker.webhook_tasks.reap_jobs) on a private Redis: jobs of lost workers go back to the
queue with a new message, or end with their webhook; lost render messages are sent again."""

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from services import start_redis_server

from jobs.records import EventType, Job, JobStatus, input_key, new_job_id
from jobs.store import JobStore, Keys, connect
from worker.webhook_tasks import UNSENT_GRACE_SECONDS, reap_jobs

KEYS = Keys()  # the default prefix, which these stores use


@dataclass
class RecordingQueue:
    rendered: list[str] = field(default_factory=list)

    def render(self, job_id: str) -> None:
        self.rendered.append(job_id)


@dataclass
class RecordingNotifier:
    sent: list[tuple[str, EventType]] = field(default_factory=list)

    def notify(self, job: Job, event: EventType) -> None:
        self.sent.append((job.id, event))


@pytest.fixture
def store() -> Iterator[JobStore]:
    with start_redis_server() as url:
        yield JobStore(connect(url, interactive=True), retention_seconds=3600)


def job(store: JobStore, *, running: bool, sent: bool = True) -> str:
    job_id = new_job_id(time.time())
    store.create(Job(job_id, "owner", JobStatus.QUEUED, {}, input_key(job_id), time.time()), max_active=99)
    if sent:
        store.mark_sent(job_id)
    if running:
        store.start(job_id, lease_seconds=60)
    return job_id


def lose_worker(store: JobStore, job_id: str) -> None:
    store.redis.hset(KEYS.job(job_id), "lease_until", repr(time.time() - 1))
    store.redis.zadd(KEYS.leases, {job_id: time.time() - 1})


def test_a_lost_workers_job_is_queued_again_with_a_new_message(store: JobStore) -> None:
    lost, alive = job(store, running=True), job(store, running=True)
    lose_worker(store, lost)
    queue, notifier = RecordingQueue(), RecordingNotifier()

    assert reap_jobs(store, queue, notifier, max_attempts=3) == 2  # reaped, then sent
    assert queue.rendered == [lost]
    assert store.get(lost).status == JobStatus.QUEUED
    assert store.get(alive).status == JobStatus.RUNNING
    assert notifier.sent == []
    assert reap_jobs(store, queue, notifier, max_attempts=3) == 0  # nothing twice
    assert queue.rendered == [lost]


def test_a_lost_workers_job_past_its_attempts_fails_with_a_webhook(store: JobStore) -> None:
    lost = job(store, running=True)
    lose_worker(store, lost)
    notifier = RecordingNotifier()
    reap_jobs(store, RecordingQueue(), notifier, max_attempts=1)
    assert store.get(lost).error["code"] == "worker_lost"
    assert notifier.sent == [(lost, EventType.FAILED)]


def test_a_message_never_sent_is_sent_after_the_grace(store: JobStore) -> None:
    recent, old = job(store, running=False, sent=False), job(store, running=False, sent=False)
    store.redis.zadd(KEYS.unsent, {old: time.time() - UNSENT_GRACE_SECONDS - 1})
    queue = RecordingQueue()
    reap_jobs(store, queue, RecordingNotifier(), max_attempts=3)
    assert queue.rendered == [old]  # the other may still be on its way from the API
    assert store.unsent(time.time()) == [recent]
