"""jobs.store.JobStore against a private redis-server: records, status changes, indexes, counters and a race."""

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import redis
from services import start_redis_server

import jobs.store
from jobs.errors import ErrorCode, IdempotencyConflict, TooManyActiveJobs
from jobs.records import EventType, Job, JobStatus, Keyframe, input_key, new_job_id
from jobs.store import STAGE_BUCKETS, JobStore, Keys, connect, event_from_redis, job_from_redis

KEYS = Keys()  # the default prefix, which these stores use

OWNER = "key-alice"
OTHER = "key-bob"
RETENTION = 3600
LEASE = 60.0  # seconds
# Creation times a second apart from a fixed past moment: ids and queue order follow them deterministically.
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with start_redis_server() as url:
        yield url


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = connect(redis_url, interactive=True)
    client.flushdb()  # our private server: nothing else lives there
    yield client
    client.close()


@pytest.fixture
def store(client: redis.Redis) -> JobStore:
    return JobStore(client, retention_seconds=RETENTION)


_clock = iter(range(10**6))


def make_job(owner: str = OWNER, *, request_hash: str = "hash-1", **fields: object) -> Job:
    """A queued job created one second after the previous one made here."""
    created_at = T0 + next(_clock)
    job_id = new_job_id(created_at)
    values: dict[str, object] = {
        "id": job_id,
        "owner": owner,
        "status": JobStatus.QUEUED,
        "settings": {"seed": 7, "preset": "test"},
        "input_key": input_key(job_id),
        "created_at": created_at,
        "request_hash": request_hash,
    }
    values.update(fields)
    return Job(**values)  # type: ignore[arg-type]


def create(store: JobStore, owner: str = OWNER, *, max_active: int = 100, **fields: object) -> Job:
    job, created = store.create(make_job(owner, **fields), max_active=max_active)
    assert created
    return job


def events(store: JobStore, job_id: str) -> list[EventType]:
    return [event_from_redis(entry_id, fields).type for entry_id, fields in store.redis.xrange(KEYS.events(job_id))]


def assert_status_counts_consistent(store: JobStore) -> None:
    """The KEYS.status_counts hash holds exactly the statuses of the job records that exist."""
    real = Counter(
        store.redis.hget(key, "status") for key in store.redis.scan_iter(KEYS.job("*")) if key.count(":") == 2
    )
    counted = {status: int(count) for status, count in store.redis.hgetall(KEYS.status_counts).items()}
    assert {status: count for status, count in counted.items() if count != 0} == dict(real)
    assert sum(counted.values()) == sum(real.values())


# --- creating and reading ------------------------------------------------------------------------


def test_create_then_get_round_trips_every_field(store: JobStore) -> None:
    job = make_job(
        settings={"seed": 3, "steps": 50, "nested": {"a": [1, 2]}},
        webhook_url="https://hooks.example/paints",
        webhook_events=("job.succeeded", "job.failed"),
        request_hash="abc123",
    )
    stored, created = store.create(job, max_active=4)

    assert created
    assert stored == job  # every field, defaults included
    assert store.get(job.id) == job
    assert store.get(job.id, owner=OWNER) == job
    assert store.redis.sismember(KEYS.owner_active(OWNER), job.id)
    assert events(store, job.id) == [EventType.QUEUED]
    assert_status_counts_consistent(store)


def test_get_of_an_unknown_job_or_another_owners_job_is_none(store: JobStore) -> None:
    job = create(store)
    assert store.get("job_missing") is None
    assert store.get(job.id, owner=OTHER) is None
    assert store.get(job.id, owner=OWNER) is not None


def test_queue_positions_follow_creation_and_close_up_when_a_job_starts(store: JobStore) -> None:
    first, second, third = create(store), create(store, OTHER), create(store)
    assert [store.queue_position(job.id) for job in (first, second, third)] == [1, 2, 3]

    store.start(first.id, LEASE)

    assert store.queue_position(first.id) is None
    assert [store.queue_position(job.id) for job in (second, third)] == [1, 2]
    assert store.queue_position("job_missing") is None


def test_active_jobs_limit_refuses_at_the_limit_and_frees_a_slot_when_a_job_finishes(store: JobStore) -> None:
    jobs = [create(store, max_active=2) for _ in range(2)]
    refused = make_job()
    with pytest.raises(TooManyActiveJobs) as caught:
        store.create(refused, max_active=2)
    assert caught.value.limit == 2
    assert store.get(refused.id) is None
    assert store.queue_position(refused.id) is None

    create(store, OTHER, max_active=2)  # the limit is per owner

    store.start(jobs[0].id, LEASE)  # running still counts as active
    with pytest.raises(TooManyActiveJobs):
        store.create(make_job(), max_active=2)

    store.finish(jobs[0].id, JobStatus.SUCCEEDED)
    assert create(store, max_active=2).status == JobStatus.QUEUED
    assert store.redis.scard(KEYS.owner_active(OWNER)) == 2
    assert_status_counts_consistent(store)


def test_same_idempotency_key_and_request_returns_the_earlier_job(store: JobStore) -> None:
    first, created = store.create(make_job(request_hash="req-1"), max_active=1, idempotency_hash="idem-1")
    assert created

    # Even at the active-jobs limit, a repeat answers with the earlier job rather than refusing.
    again, created_again = store.create(make_job(request_hash="req-1"), max_active=1, idempotency_hash="idem-1")

    assert not created_again
    assert again == first
    assert len(store.list_for_owner(OWNER, limit=10)) == 1
    assert store.find_idempotent(OWNER, "idem-1") == first
    assert store.redis.ttl(KEYS.idempotency(OWNER, "idem-1")) == pytest.approx(RETENTION, abs=5)
    assert_status_counts_consistent(store)


def test_same_idempotency_key_with_another_request_is_a_conflict(store: JobStore) -> None:
    first, _ = store.create(make_job(request_hash="req-1"), max_active=4, idempotency_hash="idem-1")
    different = make_job(request_hash="req-2")

    with pytest.raises(IdempotencyConflict):
        store.create(different, max_active=4, idempotency_hash="idem-1")

    assert store.get(different.id) is None
    assert store.find_idempotent(OWNER, "idem-1") == first
    assert [job.id for job in store.list_for_owner(OWNER, limit=10)] == [first.id]


def test_idempotency_keys_of_different_owners_are_independent(store: JobStore) -> None:
    mine, mine_created = store.create(make_job(OWNER, request_hash="req-1"), max_active=4, idempotency_hash="same")
    theirs, theirs_created = store.create(make_job(OTHER, request_hash="req-2"), max_active=4, idempotency_hash="same")

    assert mine_created and theirs_created
    assert mine.id != theirs.id
    assert store.find_idempotent(OWNER, "same") == mine
    assert store.find_idempotent(OTHER, "same") == theirs


# --- status changes ------------------------------------------------------------------------------


def test_start_marks_a_queued_job_running_with_one_attempt(store: JobStore) -> None:
    job = create(store)
    before = time.time()
    started = store.start(job.id, LEASE)

    assert started is not None
    assert started.status == JobStatus.RUNNING
    assert started.attempts == 1
    assert started.started_at is not None and started.started_at >= before
    assert events(store, job.id) == [EventType.QUEUED, EventType.STARTED]
    assert_status_counts_consistent(store)


def test_start_of_a_canceled_or_missing_job_is_none(store: JobStore) -> None:
    job = create(store)
    store.request_cancel(job.id)

    assert store.start(job.id, LEASE) is None
    after = store.get(job.id)
    assert after is not None and after.status == JobStatus.CANCELED and after.started_at is None
    assert store.start("job_missing", LEASE) is None
    assert store.redis.exists(KEYS.job("job_missing")) == 0
    assert_status_counts_consistent(store)


def test_cancel_of_a_queued_job_ends_it_at_once(store: JobStore) -> None:
    job = create(store)
    canceled, ended = store.request_cancel(job.id)

    assert ended
    assert canceled is not None and canceled.status == JobStatus.CANCELED
    assert canceled.finished_at is not None
    assert events(store, job.id) == [EventType.QUEUED, EventType.CANCELED]
    assert not store.redis.sismember(KEYS.owner_active(OWNER), job.id)
    assert store.queue_position(job.id) is None
    assert store.redis.zscore(KEYS.expiry, job.id) == pytest.approx(canceled.finished_at + RETENTION)
    assert_status_counts_consistent(store)


def test_cancel_of_a_running_job_only_flags_it(store: JobStore) -> None:
    job = create(store)
    store.start(job.id, LEASE)
    assert not store.cancel_requested(job.id)

    flagged, ended = store.request_cancel(job.id)

    assert not ended
    assert flagged is not None and flagged.status == JobStatus.RUNNING and flagged.cancel_requested
    assert store.cancel_requested(job.id)
    assert store.redis.sismember(KEYS.owner_active(OWNER), job.id)
    assert events(store, job.id) == [EventType.QUEUED, EventType.STARTED]
    assert_status_counts_consistent(store)


def test_cancel_of_a_finished_job_changes_nothing(store: JobStore) -> None:
    job = create(store)
    store.start(job.id, LEASE)
    finished = store.finish(job.id, JobStatus.SUCCEEDED, video={"key": "v.mp4"})
    counts = store.redis.hgetall(KEYS.status_counts)

    after, ended = store.request_cancel(job.id)

    assert not ended
    assert after == finished
    assert not store.cancel_requested(job.id)
    assert store.redis.hgetall(KEYS.status_counts) == counts
    assert events(store, job.id) == [EventType.QUEUED, EventType.STARTED, EventType.SUCCEEDED]


def test_cancel_of_a_missing_job(store: JobStore) -> None:
    assert store.request_cancel("job_missing") == (None, False)
    assert store.redis.exists(KEYS.job("job_missing")) == 0


def test_cancel_requested_is_true_for_a_deleted_job(store: JobStore) -> None:
    job = create(store)
    store.start(job.id, LEASE)
    assert not store.cancel_requested(job.id)
    store.delete(job.id)
    assert store.cancel_requested(job.id)


def test_finishing_twice_changes_nothing_the_second_time(store: JobStore) -> None:
    job = create(store)
    other = create(store)
    store.start(job.id, LEASE)
    error = {"code": ErrorCode.RENDER_FAILED, "message": "boom"}

    failed = store.finish(job.id, JobStatus.FAILED, error=error)
    again = store.finish(job.id, JobStatus.SUCCEEDED, video={"key": "v.mp4"})

    assert failed is not None and failed.status == JobStatus.FAILED and failed.error == error
    assert again is None
    after = store.get(job.id)
    assert after == failed and after.video is None
    assert store.redis.hgetall(KEYS.failures) == {"render_failed": "1"}
    assert events(store, job.id) == [EventType.QUEUED, EventType.STARTED, EventType.FAILED]
    assert store.redis.hgetall(KEYS.status_counts) == {"queued": "1", "running": "0", "failed": "1"}
    assert store.get(other.id).status == JobStatus.QUEUED  # type: ignore[union-attr]
    assert_status_counts_consistent(store)


def test_finish_succeeded_stores_the_video_and_full_progress(store: JobStore) -> None:
    job = create(store)
    store.start(job.id, LEASE)
    video = {"key": "jobs/x/video.mp4", "width": 64, "height": 64, "frames": 8, "fps": 4}

    done = store.finish(job.id, JobStatus.SUCCEEDED, video=video)

    assert done is not None and done.video == video and done.progress == 1.0 and done.error is None
    assert store.redis.hgetall(KEYS.failures) == {}


def test_requeue_puts_a_running_job_back_and_refunds_the_attempt(store: JobStore) -> None:
    job = create(store)
    later = create(store)
    store.start(job.id, LEASE)
    store.update(job.id, 1, {"stage": "keyframes", "progress": "0.4"}, EventType.PROGRESS, {"progress": 0.4})

    assert store.requeue(job.id, 1)

    back = store.get(job.id)
    assert back is not None
    assert back.status == JobStatus.QUEUED and back.attempts == 0
    assert back.stage is None and back.progress == 0.0
    assert store.queue_position(job.id) == 1  # it keeps its place by creation time
    assert store.queue_position(later.id) == 2
    assert events(store, job.id)[-1] == EventType.QUEUED
    assert_status_counts_consistent(store)

    assert not store.requeue(job.id, 1)  # only a running job goes back
    assert store.get(job.id).attempts == 0  # type: ignore[union-attr]
    assert store.start(job.id, LEASE).attempts == 1  # type: ignore[union-attr]


def test_requeue_of_a_finished_job_is_refused(store: JobStore) -> None:
    job = create(store)
    store.start(job.id, LEASE)
    store.finish(job.id, JobStatus.CANCELED)
    assert not store.requeue(job.id, 1)
    assert store.get(job.id).status == JobStatus.CANCELED  # type: ignore[union-attr]
    assert store.queue_position(job.id) is None


# --- leases, fencing and the reaper ---------------------------------------------------------------


def run_out(store: JobStore, job_id: str) -> None:
    """As if the worker holding the job's lease stopped renewing it long ago."""
    store.redis.hset(KEYS.job(job_id), "lease_until", repr(time.time() - 1))
    store.redis.zadd(KEYS.leases, {job_id: time.time() - 1})


def test_each_start_takes_a_new_lease_and_a_live_lease_keeps_others_out(store: JobStore) -> None:
    job = create(store)
    first = store.start(job.id, LEASE)
    assert first is not None and first.lease == 1 and first.lease_until > time.time() + LEASE - 5
    assert store.start(job.id, LEASE) is None  # a duplicate message while the worker lives
    run_out(store, job.id)
    second = store.start(job.id, LEASE)  # its worker died: the next delivery takes over
    assert second is not None and (second.lease, second.attempts) == (2, 2)
    assert_status_counts_consistent(store)


def test_a_stale_lease_can_neither_renew_write_nor_finish(store: JobStore) -> None:
    job = create(store)
    store.start(job.id, LEASE)
    run_out(store, job.id)
    store.start(job.id, LEASE)  # lease 2 now
    assert not store.renew(job.id, 1, LEASE)
    assert store.update(job.id, 1, {"progress": "0.9"}, EventType.PROGRESS, {}) is None
    assert store.finish(job.id, JobStatus.SUCCEEDED, lease=1, video={"key": "late"}) is None
    current = store.get(job.id)
    assert (current.status, current.progress, current.video) == (JobStatus.RUNNING, 0.0, None)
    assert store.renew(job.id, 2, LEASE)
    assert store.update(job.id, 2, {"progress": "0.5"}, EventType.PROGRESS, {}) is not None
    assert store.finish(job.id, JobStatus.SUCCEEDED, lease=2) is not None


def test_released_lease_lets_the_redelivered_message_start_at_once(store: JobStore) -> None:
    job = create(store)
    store.start(job.id, LEASE)
    assert store.release(job.id)
    assert store.start(job.id, LEASE).lease == 2  # type: ignore[union-attr]


def test_the_reaper_requeues_a_lost_workers_job_and_marks_it_unsent(store: JobStore) -> None:
    lost, alive = create(store), create(store)
    store.start(lost.id, LEASE)
    store.start(alive.id, LEASE)
    run_out(store, lost.id)

    (reaped,) = store.reap(time.time(), max_attempts=3)

    assert (reaped.id, reaped.status, reaped.attempts) == (lost.id, JobStatus.QUEUED, 1)
    assert store.unsent(time.time()) == [lost.id]
    assert store.get(alive.id).status == JobStatus.RUNNING  # type: ignore[union-attr]
    assert store.reap(time.time(), max_attempts=3) == []
    assert events(store, lost.id)[-1] == EventType.QUEUED
    assert_status_counts_consistent(store)


def test_the_reaper_ends_a_canceled_or_worn_out_job(store: JobStore) -> None:
    canceled, worn = create(store), create(store)
    for job in (canceled, worn):
        store.start(job.id, LEASE)
    store.request_cancel(canceled.id)  # flagged only: its worker was alive then
    run_out(store, canceled.id)
    run_out(store, worn.id)

    reaped = {job.id: job for job in store.reap(time.time(), max_attempts=1)}

    assert reaped[canceled.id].status == JobStatus.CANCELED
    assert reaped[worn.id].status == JobStatus.FAILED
    assert reaped[worn.id].error["code"] == ErrorCode.WORKER_LOST  # type: ignore[index]
    assert store.unsent(time.time()) == []
    assert_status_counts_consistent(store)


def test_cancel_of_a_job_whose_worker_is_gone_ends_it_at_once(store: JobStore) -> None:
    job = create(store)
    store.start(job.id, LEASE)
    run_out(store, job.id)
    after, ended = store.request_cancel(job.id)
    assert ended and after.status == JobStatus.CANCELED  # type: ignore[union-attr]


def test_a_new_job_is_unsent_until_its_message_is(store: JobStore) -> None:
    job = create(store)
    assert store.unsent(time.time()) == [job.id]
    assert store.unsent(time.time() - 60) == []  # recorded just now: still within the grace
    store.mark_sent(job.id)
    assert store.unsent(time.time()) == []


# --- progress ------------------------------------------------------------------------------------


def test_update_sets_fields_and_appends_the_event_and_keyframe(store: JobStore) -> None:
    job = create(store)
    store.start(job.id, LEASE)

    first = store.update(job.id, 1, {"stage": "keyframes", "progress": "0.25"}, EventType.STAGE_STARTED, {"n": 1})
    second = store.update(
        job.id, 1, {"progress": "0.5"}, EventType.KEYFRAME, {"index": 0}, Keyframe(index=0, undo_step=400, key="k0")
    )

    assert first is not None and second is not None
    after = store.get(job.id)
    assert after is not None
    assert after.stage == "keyframes" and after.progress == 0.5
    assert after.keyframes == (Keyframe(index=0, undo_step=400, key="k0"),)
    entries = store.redis.xrange(KEYS.events(job.id))
    assert [entry_id for entry_id, _ in entries[-2:]] == [first, second]
    last = event_from_redis(*entries[-1])
    assert last.type == EventType.KEYFRAME and last.data == {"index": 0}


def test_update_after_delete_writes_nothing(store: JobStore) -> None:
    job = create(store)
    store.start(job.id, LEASE)
    store.delete(job.id)

    result = store.update(
        job.id, 1, {"progress": "0.9"}, EventType.PROGRESS, {"progress": 0.9}, Keyframe(index=1, undo_step=1, key="k")
    )

    assert result is None
    assert list(store.redis.scan_iter(f"*{job.id}*")) == []


# --- listing and deleting ------------------------------------------------------------------------


def test_list_for_owner_pages_newest_first(store: JobStore) -> None:
    mine = [create(store) for _ in range(5)]
    create(store, OTHER)
    newest_first = [job.id for job in reversed(mine)]

    pages: list[list[str]] = []
    before = None
    while True:
        page = store.list_for_owner(OWNER, limit=2, before=before)
        if not page:
            break
        pages.append([job.id for job in page])
        before = page[-1].id

    assert [len(page) for page in pages] == [2, 2, 1]
    assert [job_id for page in pages for job_id in page] == newest_first
    assert [job.owner for job in store.list_for_owner(OTHER, limit=10)] == [OTHER]
    assert store.list_for_owner("key-nobody", limit=10) == []


def test_delete_removes_every_key_and_index_entry(store: JobStore) -> None:
    job = create(store)
    kept = create(store)
    store.start(job.id, LEASE)
    store.update(job.id, 1, {"progress": "0.5"}, EventType.KEYFRAME, {}, Keyframe(index=0, undo_step=1, key="k"))
    store.add_webhook_attempt(job.id, {"status": 200})
    store.finish(job.id, JobStatus.SUCCEEDED)
    assert store.get(job.id).webhook_attempts == ({"status": 200},)  # type: ignore[union-attr]

    removed = store.delete(job.id)

    assert removed is not None and removed.id == job.id
    assert store.get(job.id) is None
    assert list(store.redis.scan_iter(f"*{job.id}*")) == []
    for index in (KEYS.owner_jobs(OWNER), KEYS.queued, KEYS.expiry):
        assert store.redis.zscore(index, job.id) is None
    assert not store.redis.sismember(KEYS.owner_active(OWNER), job.id)
    assert store.get(kept.id) == kept
    assert_status_counts_consistent(store)
    assert store.delete(job.id) is None  # deleting again is harmless


def test_delete_of_a_queued_job_frees_its_slot_and_queue_place(store: JobStore) -> None:
    job = create(store)
    after = create(store)
    store.delete(job.id)
    assert store.queue_position(after.id) == 1
    assert store.redis.smembers(KEYS.owner_active(OWNER)) == {after.id}
    assert_status_counts_consistent(store)


def test_expired_lists_only_finished_jobs_past_retention(client: redis.Redis) -> None:
    store = JobStore(client, retention_seconds=1)
    done = create(store)
    store.start(done.id, LEASE)
    finished = store.finish(done.id, JobStatus.SUCCEEDED)
    canceled = create(store)
    store.request_cancel(canceled.id)
    running = create(store)
    store.start(running.id, LEASE)
    create(store)  # queued

    assert finished is not None
    assert store.expired(finished.finished_at + 0.5) == []
    assert store.expired(time.time() + 2) == [done.id, canceled.id]
    assert store.expired(time.time() + 2, limit=1) == [done.id]


# --- metrics and workers -------------------------------------------------------------------------


def test_stage_seconds_buckets_are_cumulative(store: JobStore) -> None:
    store.observe_stage_seconds("keyframes", 3.0)
    counts = store.redis.hgetall(KEYS.stage_seconds)

    assert "keyframes:le:1" not in counts
    assert all(counts[f"keyframes:le:{bound}"] == "1" for bound in STAGE_BUCKETS if bound >= 5)
    assert float(counts["keyframes:sum"]) == 3.0 and counts["keyframes:count"] == "1"

    store.observe_stage_seconds("keyframes", 0.5)
    store.observe_stage_seconds("keyframes", 5.0)  # a bound is inclusive
    store.observe_stage_seconds("video", 4000.0)  # over every bound: only sum and count
    counts = store.redis.hgetall(KEYS.stage_seconds)

    assert counts["keyframes:le:1"] == "1"
    assert counts["keyframes:le:5"] == "3"
    assert counts["keyframes:le:1800"] == "3"
    assert float(counts["keyframes:sum"]) == 8.5 and counts["keyframes:count"] == "3"
    assert {key for key in counts if key.startswith("video:")} == {"video:sum", "video:count"}


def test_worker_states_are_listed_with_their_ttl(store: JobStore) -> None:
    assert store.worker_states() == []
    store.set_worker_state("render-b", {"name": "render-b", "state": "busy", "job": "job_1"}, ttl_seconds=30)
    store.set_worker_state("render-a", {"name": "render-a", "state": "ready"}, ttl_seconds=60)

    assert store.worker_states() == [
        {"name": "render-a", "state": "ready"},
        {"name": "render-b", "state": "busy", "job": "job_1"},
    ]
    assert 0 < store.redis.ttl(KEYS.worker("render-a")) <= 60
    assert 0 < store.redis.ttl(KEYS.worker("render-b")) <= 30
    assert json.loads(store.redis.get(KEYS.worker("render-b")))["state"] == "busy"


# --- a race --------------------------------------------------------------------------------------


def test_cancel_racing_start_ends_in_exactly_one_outcome(redis_url: str, store: JobStore) -> None:
    """A cancel and a worker's start on the same queued job: either canceled and never started, or running and
    flagged; never a started job that also ended canceled."""
    canceler = JobStore(connect(redis_url, interactive=True), RETENTION)
    starter = JobStore(connect(redis_url, interactive=True), RETENTION)
    outcomes = Counter()
    for _ in range(50):
        job = create(store)
        barrier = threading.Barrier(2)
        results: dict[str, object] = {}

        def cancel(job_id: str = job.id, barrier: threading.Barrier = barrier, results: dict = results) -> None:
            barrier.wait()
            results["cancel"] = canceler.request_cancel(job_id)

        def start(job_id: str = job.id, barrier: threading.Barrier = barrier, results: dict = results) -> None:
            barrier.wait()
            results["start"] = starter.start(job_id, LEASE)

        threads = [threading.Thread(target=cancel), threading.Thread(target=start)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        _, ended = results["cancel"]  # type: ignore[misc]
        started = results["start"]
        final = store.get(job.id)
        assert final is not None
        if ended:
            outcomes["canceled"] += 1
            assert started is None
            assert final.status == JobStatus.CANCELED and final.started_at is None and final.attempts == 0
            assert events(store, job.id) == [EventType.QUEUED, EventType.CANCELED]
        else:
            outcomes["flagged"] += 1
            assert started is not None
            assert final.status == JobStatus.RUNNING and final.cancel_requested and final.attempts == 1
            assert events(store, job.id) == [EventType.QUEUED, EventType.STARTED]
        assert store.queue_position(job.id) is None
    assert sum(outcomes.values()) == 50
    assert_status_counts_consistent(store)
    canceler.redis.close()
    starter.redis.close()


def test_delete_racing_finish_keeps_status_counts_consistent(
    redis_url: str, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DELETE /v1/jobs/{id} of a running job flags it, then deletes; meanwhile its worker may finish it canceled.
    Here the worker's finish lands, deterministically, between delete()'s read and its writes."""
    job = create(store)
    store.start(job.id, LEASE)
    store.request_cancel(job.id)
    worker = JobStore(connect(redis_url, interactive=True), RETENTION)
    parse = job_from_redis
    raced = []

    def parse_then_worker_finishes(fields: dict, keyframes: list, attempts: list) -> Job:
        parsed = parse(fields, keyframes, attempts)
        if not raced:
            raced.append(True)
            worker.finish(job.id, JobStatus.CANCELED)
        return parsed

    monkeypatch.setattr(jobs.store, "job_from_redis", parse_then_worker_finishes)
    store.delete(job.id)
    worker.redis.close()

    assert raced
    assert list(store.redis.scan_iter(f"*{job.id}*")) == []
    assert_status_counts_consistent(store)
