"""Webhook delivery, the retention sweep and the reaper: light tasks (no torch, no GPU) on the webhook queue.

`WebhookTask` is the task base (Celery's "Instantiation" pattern): each worker process connects to
Redis and storage once, on first use, and keeps the connections.
"""

import logging
import time

from celery import Task

from jobs.notify import WebhookNotifier
from jobs.queue import REAP_TASK, SWEEP_TASK, WEBHOOK_TASK, TaskQueue
from jobs.records import TERMINAL_EVENTS, job_prefix
from jobs.settings import ServiceSettings
from jobs.storage import Storage, StorageError, open_storage
from jobs.store import JobStore, open_store
from jobs.webhooks import WebhookError, backoff_seconds, check_target, deliver, parse_secret, signed_headers
from worker.app import app

log = logging.getLogger("worker.webhooks")

# The API sends a job's render message right after recording the job; one still unsent after this long
# was lost (the API process died in between, or the broker refused it after the record was made).
UNSENT_GRACE_SECONDS = 30


class WebhookTask(Task):
    _settings: ServiceSettings | None = None
    _store: JobStore | None = None
    _storage: Storage | None = None

    @property
    def settings(self) -> ServiceSettings:
        if self._settings is None:
            self._settings = ServiceSettings()
        return self._settings

    @property
    def store(self) -> JobStore:
        if self._store is None:
            self._store = open_store(self.settings)
        return self._store

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            self._storage = open_storage(self.settings)
        return self._storage


@app.task(bind=True, base=WebhookTask, name=WEBHOOK_TASK, max_retries=None)
def deliver_webhook(task: WebhookTask, job_id: str, event: str, message_id: str, body: str, queued_at: float) -> None:
    """One delivery attempt of one event; failed attempts are retried with backoff until the retry window ends."""
    settings, store = task.settings, task.store
    job = store.get(job_id)
    if job is None or not job.webhook_url:
        return  # deleted since
    attempt = task.request.retries + 1
    record = {"event": event, "webhook_id": message_id, "attempt": attempt, "at": time.time()}
    if settings.webhook_secret is None:
        store.add_webhook_attempt(job_id, {**record, "status_code": None, "error": "no webhook secret"})
        log.error("webhook for job %s not sent: PAINTS_UNDO_WEBHOOK_SECRET is not set", job_id)
        return
    try:
        # Checked again at each attempt: the name may resolve elsewhere now (DNS rebinding).
        target = check_target(job.webhook_url, settings.webhook_allowed_hosts)
    except WebhookError as err:
        store.add_webhook_attempt(job_id, {**record, "status_code": None, "error": str(err)})
        return
    data = body.encode()
    key = parse_secret(settings.webhook_secret.get_secret_value())
    result = deliver(
        target, data, signed_headers(key, message_id, int(time.time()), data), settings.webhook_timeout_seconds
    )
    store.add_webhook_attempt(job_id, {**record, "status_code": result.status_code, "error": result.error})
    if result.ok:
        return
    delay = backoff_seconds(attempt, base=settings.webhook_backoff_seconds)
    if time.time() + delay - queued_at > settings.webhook_retry_seconds:
        log.warning("webhook %s for job %s: giving up after %d attempts", message_id, job_id, attempt)
        return
    raise task.retry(countdown=delay)


@app.task(bind=True, base=WebhookTask, name=SWEEP_TASK)
def sweep_expired(task: WebhookTask) -> int:
    """Delete the files and records of jobs past their retention; returns how many."""
    return delete_expired(task.store, task.storage)


def delete_expired(store: JobStore, storage: Storage) -> int:
    deleted = 0
    while expired := store.expired(time.time()):
        for job_id in expired:
            try:
                storage.delete_prefix(job_prefix(job_id))
            except StorageError as err:
                log.warning("retention: could not delete the files of %s (%s); will retry", job_id, err)
                return deleted
            store.delete(job_id)
            deleted += 1
    if deleted:
        log.info("retention: deleted %d expired jobs", deleted)
    return deleted


@app.task(bind=True, base=WebhookTask, name=REAP_TASK)
def reap(task: WebhookTask) -> int:
    """Jobs whose worker died with its host go back to the queue (or end); lost render messages are sent.
    Returns how many jobs it acted on."""
    queue = TaskQueue(task.app)
    return reap_jobs(
        task.store,
        queue,
        WebhookNotifier(queue, task.storage, task.settings.url_expiry_seconds),
        task.settings.max_attempts,
    )


def reap_jobs(store: JobStore, queue: TaskQueue, notifier: WebhookNotifier, max_attempts: int) -> int:
    now = time.time()
    reaped = store.reap(now, max_attempts)
    for job in reaped:
        if job.status.is_terminal():
            log.warning("reaper: job %s of a lost worker ended %s", job.id, job.status)
            notifier.notify(job, TERMINAL_EVENTS[job.status])
        else:
            log.warning("reaper: job %s of a lost worker is queued again (attempt %d done)", job.id, job.attempts)
    unsent = store.unsent(recorded_before=now - UNSENT_GRACE_SECONDS)
    for job_id in unsent:
        queue.render(job_id)
        store.mark_sent(job_id)
    if unsent:
        log.info("reaper: sent %d render messages", len(unsent))
    return len(reaped) + len(unsent)
