"""Queue the webhook deliveries a job event triggers, on the webhook queue: never inside a render."""

import json
import secrets
import time

from jobs.queue import TaskQueue
from jobs.records import EventType, Job
from jobs.schemas import job_view, timestamp
from jobs.storage import Storage


class WebhookNotifier:
    def __init__(self, queue: TaskQueue, storage: Storage, url_expiry_seconds: int):
        self.queue = queue
        self.storage = storage
        self.url_expiry = url_expiry_seconds

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
        self.queue.deliver_webhook(job.id, str(event), f"msg_{secrets.token_hex(12)}", json.dumps(body), now)
