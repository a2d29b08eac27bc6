"""Queue the webhook deliveries a job event triggers, on the webhook queue: never inside a render."""

import json
import secrets
import time

from celery import Celery

from jobs.queue import WEBHOOK_TASK
from jobs.schemas import job_view, timestamp
from jobs.settings import ServiceSettings
from jobs.storage import Storage
from jobs.store import EventType, Job


class WebhookNotifier:
    def __init__(self, celery: Celery, storage: Storage, settings: ServiceSettings):
        self.celery = celery
        self.storage = storage
        self.url_expiry = settings.url_expiry_seconds

    def notify(self, job: Job, event: EventType) -> None:
        """Queue `event` for the job's webhook when it has one subscribed to that event.

        The body is fixed now (the job as it is at the event); retries resend it under the same webhook-id.
        """
        if not job.webhook_url or event not in job.webhook_events:
            return
        now = time.time()
        body = {
            "type": str(event),
            "timestamp": timestamp(now).isoformat(),
            "data": job_view(job, self.storage, self.url_expiry).model_dump(mode="json"),
        }
        message_id = f"msg_{secrets.token_hex(12)}"
        self.celery.send_task(WEBHOOK_TASK, args=[job.id, str(event), message_id, json.dumps(body), now])
