"""Job records, per-job event streams and indexes in Redis: the state the API and the workers share.

Celery carries the work (a message holding only the job id); this module holds what a client sees.
Every status change is a WATCH/MULTI transaction that also appends its event, so a cancel racing a
worker's start ends in exactly one of the two outcomes. Light: no torch.

Keys (under a prefix, `pu:` by default; see `Keys`):
  job:{id}              hash: the record (fields of `Job`)
  job:{id}:keyframes    list of {"index", "undo_step", "key"} JSON, in arrival order
  job:{id}:webhooks     list of delivery attempts (JSON), in order
  job:{id}:events       stream of {"type", "data"}: what SSE clients read, resumable by entry id
  owner:{owner}:jobs    sorted set of the owner's job ids; ids sort by creation time (newest = largest)
  owner:{owner}:active  set of the owner's queued or running job ids (the active-jobs limit)
  owner:{owner}:idem:{h} job id of an Idempotency-Key (hashed)
  queued                sorted set of queued job ids by creation time (queue positions, queue depth)
  unsent                sorted set of queued job ids whose render message is not known to be sent, by
                        the time they were recorded (the reaper sends those left there: a lost message)
  leases                sorted set of running job ids by the time their worker's lease runs out (the
                        reaper puts a job whose worker stopped renewing back in the queue)
  expiry                sorted set of finished job ids by the time their record and files are deleted
  worker:{name}         a render worker's state (JSON, expires unless refreshed): /readyz lists them
  metrics:*             counters read by /metrics
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from jobs.errors import ErrorCode, IdempotencyConflict, TooManyActiveJobs
from jobs.records import TERMINAL_EVENTS, Event, EventType, Job, JobStatus, Keyframe
from jobs.settings import ServiceSettings

STAGE_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800)
MAX_EVENTS = 10_000  # per job; a default render writes about 300


@dataclass(frozen=True)
class StageHistogram:
    buckets: list[tuple[float, int]]  # (upper bound in seconds, samples at or under it)
    count: int
    sum: float


@dataclass(frozen=True)
class ServiceCounters:
    queue_depth: int
    jobs_by_status: dict[JobStatus, int]
    failures_by_code: dict[str, int]
    stage_seconds: dict[str, StageHistogram]
    worker_states: list[str]


def job_from_redis(fields: dict[str, str], keyframes: list[str], attempts: list[str]) -> Job:
    """A `Job` from its record hash and its keyframe and webhook-attempt lists."""

    def number(name: str) -> float | None:
        return float(fields[name]) if fields.get(name) else None

    return Job(
        id=fields["id"],
        owner=fields["owner"],
        status=JobStatus(fields["status"]),
        settings=json.loads(fields["settings"]),
        input_key=fields["input_key"],
        created_at=float(fields["created_at"]),
        started_at=number("started_at"),
        finished_at=number("finished_at"),
        stage=fields.get("stage") or None,
        progress=float(fields.get("progress") or 0),
        eta_seconds=number("eta_seconds"),
        prompt=fields.get("prompt"),
        video=json.loads(fields["video"]) if fields.get("video") else None,
        outputs=tuple(json.loads(fields.get("outputs") or "[]")),
        error=json.loads(fields["error"]) if fields.get("error") else None,
        attempts=int(fields.get("attempts") or 0),
        lease=int(fields.get("lease") or 0),
        lease_until=number("lease_until"),
        cancel_requested=fields.get("cancel_requested") == "1",
        webhook_url=fields.get("webhook_url") or None,
        webhook_events=tuple(filter(None, fields.get("webhook_events", "").split(","))),
        request_hash=fields.get("request_hash", ""),
        keyframes=tuple(Keyframe(**json.loads(item)) for item in keyframes),
        webhook_attempts=tuple(json.loads(item) for item in attempts),
        metadata=json.loads(fields.get("metadata") or "{}"),
        supplied_keyframes=tuple(json.loads(fields.get("supplied_keyframes") or "[]")),
    )


def connect(url: str, *, interactive: bool = False) -> redis.Redis:
    """A Redis client. Workers' clients retry lost connections with backoff for about half a minute, riding
    out a Redis restart instead of failing a job; the API's (`interactive`) give up within seconds, so a
    request answers 503 at once instead of hanging."""
    if interactive:
        timeouts = {"socket_connect_timeout": 2, "socket_timeout": 2}
        retry = Retry(ExponentialBackoff(cap=0.5, base=0.1), retries=1)
    else:
        timeouts = {"socket_connect_timeout": 5, "socket_timeout": 30}
        retry = Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=20)
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        health_check_interval=30,
        retry=retry,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        **timeouts,
    )


def open_store(settings: ServiceSettings, *, interactive: bool = False) -> "JobStore":
    """The job store the settings name: their Redis (see `connect`), retention and key prefix."""
    client = connect(settings.redis_url, interactive=interactive)
    return JobStore(client, settings.retention_seconds, Keys(settings.redis_prefix))


@dataclass(frozen=True)
class Keys:
    """The names of the service's Redis keys, all under `prefix` (PAINTS_UNDO_REDIS_PREFIX), so several
    services can share one Redis."""

    prefix: str = "pu:"

    @property
    def queued(self) -> str:
        return f"{self.prefix}queued"

    @property
    def unsent(self) -> str:
        return f"{self.prefix}unsent"

    @property
    def leases(self) -> str:
        return f"{self.prefix}leases"

    @property
    def expiry(self) -> str:
        return f"{self.prefix}expiry"

    @property
    def status_counts(self) -> str:
        return f"{self.prefix}metrics:status"

    @property
    def failures(self) -> str:
        return f"{self.prefix}metrics:failures"

    @property
    def stage_seconds(self) -> str:
        return f"{self.prefix}metrics:stage_seconds"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def keyframes(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:keyframes"

    def webhooks(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:webhooks"

    def events(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:events"

    def owner_jobs(self, owner: str) -> str:
        return f"{self.prefix}owner:{owner}:jobs"

    def owner_active(self, owner: str) -> str:
        return f"{self.prefix}owner:{owner}:active"

    def idempotency(self, owner: str, key_hash: str) -> str:
        return f"{self.prefix}owner:{owner}:idem:{key_hash}"

    def worker(self, name: str) -> str:
        return f"{self.prefix}worker:{name}"


class JobStore:
    def __init__(self, client: redis.Redis, retention_seconds: int, keys: Keys = Keys()):
        self.redis = client
        self.retention_seconds = retention_seconds
        self.keys = keys

    # --- reading -------------------------------------------------------------------------------

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, or None when it does not exist or (given `owner`) belongs to someone else."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.job(job_id))
            pipe.lrange(self.keys.keyframes(job_id), 0, -1)
            pipe.lrange(self.keys.webhooks(job_id), 0, -1)
            fields, keyframes, attempts = pipe.execute()
        if not fields or (owner is not None and fields["owner"] != owner):
            return None
        return job_from_redis(fields, keyframes, attempts)

    def list_for_owner(self, owner: str, limit: int, before: str | None = None) -> list[Job]:
        """The owner's jobs, newest first, starting after the job id `before` (the previous page's last)."""
        high = f"({before}" if before else "+"
        ids = self.redis.zrevrangebylex(self.keys.owner_jobs(owner), high, "-", start=0, num=limit)
        jobs = [self.get(job_id) for job_id in ids]
        return [job for job in jobs if job is not None]

    def queue_position(self, job_id: str) -> int | None:
        """1 for the next job a worker takes; None when not queued."""
        rank = self.redis.zrank(self.keys.queued, job_id)
        return None if rank is None else rank + 1

    def cancel_requested(self, job_id: str) -> bool:
        """True when a cancel was asked for, or the job was deleted."""
        job_id_field, flag = self.redis.hmget(self.keys.job(job_id), ["id", "cancel_requested"])
        return job_id_field is None or flag == "1"

    def active_count(self, owner: str) -> int:
        """How many of the owner's jobs are queued or running (the active-jobs limit counts these)."""
        return int(self.redis.scard(self.keys.owner_active(owner)))

    def find_idempotent(self, owner: str, key_hash: str) -> Job | None:
        job_id = self.redis.get(self.keys.idempotency(owner, key_hash))
        return self.get(job_id) if job_id else None

    # --- creating ------------------------------------------------------------------------------

    def create(self, job: Job, *, max_active: int, idempotency_hash: str | None = None) -> tuple[Job, bool]:
        """Store a new queued job; returns (job, True), or (the earlier job, False) for a repeated Idempotency-Key.

        Raises TooManyActiveJobs, or IdempotencyConflict when the key was used for a different request.
        """
        idem = self.keys.idempotency(job.owner, idempotency_hash) if idempotency_hash else None
        active = self.keys.owner_active(job.owner)
        watched = [active] + ([idem] if idem else [])

        def transaction(pipe: redis.client.Pipeline) -> tuple[str, bool]:
            if idem and (earlier := pipe.get(idem)):
                earlier_hash = pipe.hget(self.keys.job(earlier), "request_hash")
                if earlier_hash is not None:
                    if earlier_hash != job.request_hash:
                        raise IdempotencyConflict()
                    return earlier, False
            if pipe.scard(active) >= max_active:
                raise TooManyActiveJobs(max_active)
            pipe.multi()
            pipe.hset(self.keys.job(job.id), mapping=self._record_fields(job))
            pipe.zadd(self.keys.owner_jobs(job.owner), {job.id: 0})
            pipe.sadd(active, job.id)
            pipe.zadd(self.keys.queued, {job.id: job.created_at})
            pipe.zadd(self.keys.unsent, {job.id: time.time()})
            pipe.hincrby(self.keys.status_counts, JobStatus.QUEUED, 1)
            self._add_event(pipe, job.id, EventType.QUEUED, {"status": "queued"})
            if idem:
                pipe.set(idem, job.id, ex=self.retention_seconds)
            return job.id, True

        job_id, created = self.redis.transaction(transaction, *watched, value_from_callable=True)
        stored = self.get(job_id)
        assert stored is not None
        return stored, created

    @staticmethod
    def _record_fields(job: Job) -> dict[str, str]:
        return {
            "id": job.id,
            "owner": job.owner,
            "status": job.status,
            "settings": json.dumps(job.settings),
            "input_key": job.input_key,
            "created_at": repr(job.created_at),
            "progress": "0",
            "attempts": "0",
            "webhook_url": job.webhook_url or "",
            "webhook_events": ",".join(job.webhook_events),
            "request_hash": job.request_hash,
            "metadata": json.dumps(job.metadata),
            "supplied_keyframes": json.dumps(job.supplied_keyframes),
        }

    # --- status changes ------------------------------------------------------------------------

    def _change(self, job_id: str, change: Callable[[Job, redis.client.Pipeline], bool]) -> tuple[Job | None, bool]:
        """Run `change(job, pipe)` in a transaction watching the job record, after `pipe.multi()`.

        `change` queues its writes and returns its verdict; (None, False) when the job does not exist.
        """

        def transaction(pipe: redis.client.Pipeline) -> bool:
            fields = pipe.hgetall(self.keys.job(job_id))
            if not fields:
                return False
            pipe.multi()
            return change(job_from_redis(fields, [], []), pipe)

        verdict = self.redis.transaction(transaction, self.keys.job(job_id), value_from_callable=True)
        return self.get(job_id), verdict

    def _set_status(self, pipe: redis.client.Pipeline, job: Job, status: JobStatus) -> None:
        pipe.hset(self.keys.job(job.id), "status", status)
        pipe.hincrby(self.keys.status_counts, job.status, -1)
        pipe.hincrby(self.keys.status_counts, status, 1)

    def _add_event(self, pipe: redis.client.Pipeline, job_id: str, type: EventType, data: dict[str, Any]) -> None:
        pipe.xadd(self.keys.events(job_id), {"type": str(type), "data": json.dumps(data)}, maxlen=MAX_EVENTS)

    def start(self, job_id: str, lease_seconds: float) -> Job | None:
        """Give a worker the job: mark it running under a new lease (its fencing token) and count the attempt.

        A queued job starts; so does a running one whose lease ran out (its worker died). None when the job
        is gone, finished (a canceled job never starts) or running under a live lease (a duplicate message).
        """
        now = time.time()

        def change(job: Job, pipe: redis.client.Pipeline) -> bool:
            if job.status.is_terminal() or (job.status == JobStatus.RUNNING and (job.lease_until or 0) > now):
                return False
            self._set_status(pipe, job, JobStatus.RUNNING)
            fields = {"started_at": repr(now), "stage": "", "progress": "0", "lease_until": repr(now + lease_seconds)}
            pipe.hset(self.keys.job(job_id), mapping=fields)
            pipe.hincrby(self.keys.job(job_id), "attempts", 1)
            pipe.hincrby(self.keys.job(job_id), "lease", 1)
            pipe.delete(self.keys.keyframes(job_id))  # a new attempt produces them again
            pipe.zrem(self.keys.queued, job_id)
            pipe.zrem(self.keys.unsent, job_id)
            pipe.zadd(self.keys.leases, {job_id: now + lease_seconds})
            self._add_event(pipe, job_id, EventType.STARTED, {"status": "running", "attempt": job.attempts + 1})
            return True

        job, started = self._change(job_id, change)
        return job if started else None

    def renew(self, job_id: str, lease: int, lease_seconds: float) -> bool:
        """Extend the lease of a running job; False when this lease is no longer the job's (reaped, ended)."""

        def change(job: Job, pipe: redis.client.Pipeline) -> bool:
            if job.status != JobStatus.RUNNING or job.lease != lease:
                return False
            until = time.time() + lease_seconds
            pipe.hset(self.keys.job(job_id), "lease_until", repr(until))
            pipe.zadd(self.keys.leases, {job_id: until})
            return True

        return self._change(job_id, change)[1]

    def release(self, job_id: str) -> bool:
        """End the lease of a running job now (its worker process died), so that it may start again at once."""

        def change(job: Job, pipe: redis.client.Pipeline) -> bool:
            if job.status != JobStatus.RUNNING:
                return False
            pipe.hset(self.keys.job(job_id), "lease_until", "0")
            pipe.zadd(self.keys.leases, {job_id: 0})
            return True

        return self._change(job_id, change)[1]

    def requeue(self, job_id: str, lease: int) -> bool:
        """Put a running job back in the queue (its task is retried later); the attempt does not count."""

        def change(job: Job, pipe: redis.client.Pipeline) -> bool:
            if job.status != JobStatus.RUNNING or job.lease != lease:
                return False
            self._back_to_queue(pipe, job)
            pipe.hincrby(self.keys.job(job_id), "attempts", -1)
            return True

        return self._change(job_id, change)[1]

    def _back_to_queue(self, pipe: redis.client.Pipeline, job: Job) -> None:
        self._set_status(pipe, job, JobStatus.QUEUED)
        pipe.hset(self.keys.job(job.id), mapping={"stage": "", "progress": "0", "lease_until": ""})
        pipe.zrem(self.keys.leases, job.id)
        pipe.zadd(self.keys.queued, {job.id: job.created_at})
        self._add_event(pipe, job.id, EventType.QUEUED, {"status": "queued"})

    def _end(
        self,
        pipe: redis.client.Pipeline,
        job: Job,
        status: JobStatus,
        video: dict[str, Any] | None = None,
        outputs: list[dict[str, Any]] | None = None,
        error: dict[str, str] | None = None,
    ) -> None:
        now = time.time()
        fields = {"finished_at": repr(now), "eta_seconds": ""}
        if status == JobStatus.SUCCEEDED:
            fields["progress"] = "1"
        if video is not None:
            fields["video"] = json.dumps(video)
        if outputs is not None:
            fields["outputs"] = json.dumps(outputs)
        if error is not None:
            fields["error"] = json.dumps(error)
            pipe.hincrby(self.keys.failures, error["code"], 1)
        self._set_status(pipe, job, status)
        pipe.hset(self.keys.job(job.id), mapping=fields)
        pipe.srem(self.keys.owner_active(job.owner), job.id)
        pipe.zrem(self.keys.queued, job.id)
        pipe.zrem(self.keys.unsent, job.id)
        pipe.zrem(self.keys.leases, job.id)
        pipe.zadd(self.keys.expiry, {job.id: now + self.retention_seconds})
        self._add_event(pipe, job.id, TERMINAL_EVENTS[status], {"status": str(status), "error": error})

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        *,
        lease: int | None = None,
        video: dict[str, Any] | None = None,
        outputs: list[dict[str, Any]] | None = None,
        error: dict[str, str] | None = None,
    ) -> Job | None:
        """Move an unfinished job to a terminal status; None when it was already finished (or is gone).

        lease: the finishing worker's; its finish is refused (None) once the job runs under another lease.
        """
        assert status.is_terminal()

        def change(job: Job, pipe: redis.client.Pipeline) -> bool:
            if job.status.is_terminal() or (lease is not None and job.lease != lease):
                return False
            self._end(pipe, job, status, video, outputs, error)
            return True

        job, ended = self._change(job_id, change)
        return job if ended else None

    def request_cancel(self, job_id: str) -> tuple[Job | None, bool]:
        """Cancel: a queued job ends canceled now, and so does a running one whose worker is gone (lease run out);
        a running one is flagged and its worker stops at the next step.

        Returns (the job, True when it ended canceled by this call). Finished jobs are left as they are.
        """

        now = time.time()

        def change(job: Job, pipe: redis.client.Pipeline) -> bool:
            worker_gone = job.status == JobStatus.RUNNING and (job.lease_until or 0) <= now
            if job.status == JobStatus.QUEUED or worker_gone:
                self._end(pipe, job, JobStatus.CANCELED)
                return True
            if job.status == JobStatus.RUNNING:
                pipe.hset(self.keys.job(job_id), "cancel_requested", "1")
            return False

        return self._change(job_id, change)

    # --- progress while running ----------------------------------------------------------------

    # Writes of a running job land only while the writer holds its lease: a job deleted mid-render is not
    # recreated, and a worker whose job was reaped and started elsewhere writes nothing more.
    _UPDATE_SCRIPT = """
    local state = redis.call('HMGET', KEYS[1], 'status', 'lease')
    if state[1] ~= 'running' or state[2] ~= ARGV[5] then return false end
    if #ARGV > 5 then redis.call('HSET', KEYS[1], unpack(ARGV, 6)) end
    if ARGV[4] ~= '' then redis.call('RPUSH', KEYS[3], ARGV[4]) end
    return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'type', ARGV[1], 'data', ARGV[2])
    """

    def update(
        self,
        job_id: str,
        lease: int,
        fields: dict[str, str],
        event: EventType,
        data: dict[str, Any],
        keyframe: Keyframe | None = None,
    ) -> str | None:
        """Set record fields, add a keyframe and append an event, atomically and only while `lease` is the
        running job's.

        Returns the event's stream id, or None when the job is gone, ended or running under another lease.
        """
        flat = [item for pair in fields.items() for item in pair]
        keys = [self.keys.job(job_id), self.keys.events(job_id), self.keys.keyframes(job_id)]
        keyframe_json = json.dumps(keyframe.__dict__) if keyframe else ""
        args = [str(event), json.dumps(data), MAX_EVENTS, keyframe_json, lease, *flat]
        return self.redis.eval(self._UPDATE_SCRIPT, len(keys), *keys, *args)

    def add_webhook_attempt(self, job_id: str, attempt: dict[str, Any]) -> None:
        if self.redis.exists(self.keys.job(job_id)):
            self.redis.rpush(self.keys.webhooks(job_id), json.dumps(attempt))

    def observe_stage_seconds(self, stage: str, seconds: float) -> None:
        """One sample of the stage-duration histogram /metrics exposes."""
        with self.redis.pipeline() as pipe:
            for bound in STAGE_BUCKETS:
                if seconds <= bound:
                    pipe.hincrby(self.keys.stage_seconds, f"{stage}:le:{bound}", 1)
            pipe.hincrbyfloat(self.keys.stage_seconds, f"{stage}:sum", seconds)
            pipe.hincrby(self.keys.stage_seconds, f"{stage}:count", 1)
            pipe.execute()

    # --- the reaper ----------------------------------------------------------------------------

    def mark_sent(self, job_id: str) -> None:
        """The job's render message is with the broker."""
        self.redis.zrem(self.keys.unsent, job_id)

    def unsent(self, recorded_before: float, limit: int = 100) -> list[str]:
        """Queued jobs whose message was not known to be sent by `recorded_before` (lost between record and send)."""
        return self.redis.zrangebyscore(self.keys.unsent, "-inf", recorded_before, start=0, num=limit)

    def reap(self, now: float, max_attempts: int, limit: int = 100) -> list[Job]:
        """Running jobs whose lease ran out by `now` (their worker died with its host): each goes back to the
        queue, unsent, or ends canceled (a cancel was asked) or failed `worker_lost` (after `max_attempts`).
        Returns the jobs changed, as they are now."""
        changed = []
        for job_id in self.redis.zrangebyscore(self.keys.leases, "-inf", now, start=0, num=limit):

            def change(job: Job, pipe: redis.client.Pipeline) -> bool:
                if job.status != JobStatus.RUNNING or (job.lease_until or 0) > now:
                    pipe.zrem(self.keys.leases, job.id)  # ended or renewed since it was listed
                    return False
                if job.cancel_requested:
                    self._end(pipe, job, JobStatus.CANCELED)
                elif job.attempts >= max_attempts:
                    message = f"the worker running this job stopped {job.attempts} times (host lost or killed)"
                    self._end(pipe, job, JobStatus.FAILED, error={"code": ErrorCode.WORKER_LOST, "message": message})
                else:
                    self._back_to_queue(pipe, job)
                    pipe.zadd(self.keys.unsent, {job.id: 0})
                return True

            job, reaped = self._change(job_id, change)
            if reaped and job is not None:
                changed.append(job)
        return changed

    # --- deleting ------------------------------------------------------------------------------

    def delete(self, job_id: str) -> Job | None:
        """Remove the record, its lists, events and index entries; returns what was removed.

        One transaction watching the record, so a status change racing the delete cannot skew the counts.
        """

        def transaction(pipe: redis.client.Pipeline) -> Job | None:
            fields = pipe.hgetall(self.keys.job(job_id))
            pipe.multi()
            pipe.zrem(self.keys.expiry, job_id)
            if not fields:
                return None
            job = job_from_redis(fields, [], [])
            pipe.delete(
                self.keys.job(job_id), self.keys.keyframes(job_id), self.keys.webhooks(job_id), self.keys.events(job_id)
            )
            pipe.zrem(self.keys.owner_jobs(job.owner), job_id)
            pipe.srem(self.keys.owner_active(job.owner), job_id)
            pipe.zrem(self.keys.queued, job_id)
            pipe.zrem(self.keys.unsent, job_id)
            pipe.zrem(self.keys.leases, job_id)
            pipe.hincrby(self.keys.status_counts, job.status, -1)
            return job

        return self.redis.transaction(transaction, self.keys.job(job_id), value_from_callable=True)

    def expired(self, now: float, limit: int = 100) -> list[str]:
        """Finished jobs whose retention has run out."""
        return self.redis.zrangebyscore(self.keys.expiry, "-inf", now, start=0, num=limit)

    # --- metrics -------------------------------------------------------------------------------

    def counters(self) -> ServiceCounters:
        """What /metrics exposes, read in one round trip (plus the worker states)."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.queued)
            pipe.hgetall(self.keys.status_counts)
            pipe.hgetall(self.keys.failures)
            pipe.hgetall(self.keys.stage_seconds)
            depth, statuses, failures, stages = pipe.execute()
        histograms = {}
        for stage in sorted({name.split(":", 1)[0] for name in stages}):
            buckets = [(bound, int(stages.get(f"{stage}:le:{bound}", 0))) for bound in STAGE_BUCKETS]
            histograms[stage] = StageHistogram(
                buckets, int(stages.get(f"{stage}:count", 0)), float(stages.get(f"{stage}:sum", 0))
            )
        return ServiceCounters(
            queue_depth=depth,
            jobs_by_status={status: max(0, int(statuses.get(status, 0))) for status in JobStatus},
            failures_by_code={code: int(count) for code, count in sorted(failures.items())},
            stage_seconds=histograms,
            worker_states=[worker["state"] for worker in self.worker_states()],
        )

    # --- workers -------------------------------------------------------------------------------

    def set_worker_state(self, name: str, state: dict[str, Any], ttl_seconds: int) -> None:
        self.redis.set(self.keys.worker(name), json.dumps(state), ex=ttl_seconds)

    def worker_states(self) -> list[dict[str, Any]]:
        keys = sorted(self.redis.scan_iter(self.keys.worker("*"), count=100))
        return [json.loads(value) for value in self.redis.mget(keys) if value] if keys else []


def event_from_redis(entry_id: str, fields: dict[str, str]) -> Event:
    return Event(entry_id, EventType(fields["type"]), json.loads(fields["data"]))
