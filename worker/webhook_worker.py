"""The webhook worker: delivers webhooks and deletes expired jobs. No GPU, no models.

    python -m worker.webhook_worker [extra `celery worker` options]

Deliveries run here, on their own queue, so a slow or dead receiver never holds up a render.
It also runs Celery beat, which schedules the retention sweep; the sweep is idempotent, so a
second webhook worker (with its own beat) does no harm.
"""

import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from celery import Task

from jobs.queue import SWEEP_TASK, WEBHOOK_TASK, create_celery
from jobs.settings import WEBHOOK_QUEUE, ServiceSettings
from jobs.storage import StorageError, open_storage
from jobs.store import JobStore, connect, job_prefix
from jobs.webhooks import WebhookError, backoff_seconds, check_target, deliver, parse_secret, signed_headers

log = logging.getLogger("jobs.webhooks")


class WebhookWorker:
    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.celery = create_celery(settings)
        self.store = JobStore(connect(settings.redis_url), settings.retention_seconds)
        self.storage = open_storage(settings)
        self.key = parse_secret(settings.webhook_secret.get_secret_value()) if settings.webhook_secret else None

        def deliver(task: Task, job_id: str, event: str, message_id: str, body: str, queued_at: float) -> None:
            self.deliver(task, job_id, event, message_id, body, queued_at)

        self.celery.task(name=WEBHOOK_TASK, bind=True, max_retries=None)(deliver)
        self.celery.task(name=SWEEP_TASK)(self.sweep_expired)

    def deliver(self, task: Task, job_id: str, event: str, message_id: str, body: str, queued_at: float) -> None:
        """One delivery attempt of one event; failed attempts are retried with backoff until the retry window ends."""
        job = self.store.get(job_id)
        if job is None or not job.webhook_url:
            return  # deleted since
        attempt = task.request.retries + 1
        record = {"event": event, "webhook_id": message_id, "attempt": attempt, "at": time.time()}
        if self.key is None:
            self.store.add_webhook_attempt(job_id, {**record, "status_code": None, "error": "no webhook secret"})
            log.error("webhook for job %s not sent: PAINTS_UNDO_WEBHOOK_SECRET is not set", job_id)
            return
        try:
            # Checked again at each attempt: the name may resolve elsewhere now (DNS rebinding).
            target = check_target(job.webhook_url, self.settings.webhook_allowed_hosts)
        except WebhookError as err:
            self.store.add_webhook_attempt(job_id, {**record, "status_code": None, "error": str(err)})
            return
        data = body.encode()
        headers = signed_headers(self.key, message_id, int(time.time()), data)
        result = deliver(target, data, headers, self.settings.webhook_timeout_seconds)
        self.store.add_webhook_attempt(job_id, {**record, "status_code": result.status_code, "error": result.error})
        if result.ok:
            return
        delay = backoff_seconds(attempt, base=self.settings.webhook_backoff_seconds)
        if time.time() + delay - queued_at > self.settings.webhook_retry_seconds:
            log.warning("webhook %s for job %s: giving up after %d attempts", message_id, job_id, attempt)
            return
        raise task.retry(countdown=delay)

    def sweep_expired(self) -> int:
        """Delete the files and records of jobs past their retention; returns how many."""
        deleted = 0
        while expired := self.store.expired(time.time()):
            for job_id in expired:
                try:
                    self.storage.delete_prefix(job_prefix(job_id))
                except StorageError as err:
                    log.warning("retention: could not delete the files of %s (%s); will retry", job_id, err)
                    return deleted
                self.store.delete(job_id)
                deleted += 1
        if deleted:
            log.info("retention: deleted %d expired jobs", deleted)
        return deleted


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ServiceSettings()
    worker = WebhookWorker(settings)
    schedule = Path(tempfile.gettempdir()) / f"paints-undo-beat-{os.getpid()}"  # beat's own bookkeeping
    options = ["--pool=threads", "--concurrency=8", f"--queues={WEBHOOK_QUEUE}", "--hostname=webhooks@%h"]
    options += ["--beat", f"--schedule={schedule}"]
    worker.celery.worker_main(["worker", "--loglevel=INFO", "--without-gossip", "--without-mingle", *options, *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
