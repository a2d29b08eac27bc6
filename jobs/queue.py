"""The Celery side every process shares: the broker configuration, queue and task names, and sending tasks.

Light (no torch): the API and the notifier send tasks by name (`TaskQueue`), without importing the task
modules; the workers define the tasks (worker/render_tasks.py, worker/webhook_tasks.py) on an app
configured with `celery_config`.
"""

from typing import Any

from celery import Celery

from jobs.settings import ServiceSettings

RENDER_QUEUE = "render"
WEBHOOK_QUEUE = "webhooks"

RENDER_TASK = "paints_undo.render"
WEBHOOK_TASK = "paints_undo.deliver_webhook"
SWEEP_TASK = "paints_undo.sweep_expired"
REAP_TASK = "paints_undo.reap"


def celery_config(settings: ServiceSettings) -> dict[str, Any]:
    return {
        "broker_url": settings.redis_url,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,  # job state lives in jobs.store, not in a result backend
        "task_routes": {
            RENDER_TASK: {"queue": RENDER_QUEUE},
            WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE},
            SWEEP_TASK: {"queue": WEBHOOK_QUEUE},
            REAP_TASK: {"queue": WEBHOOK_QUEUE},
        },
        "task_create_missing_queues": True,
        # A job is acknowledged only once it has finished, and a worker process that dies mid-job puts its job
        # back in the queue (worker.runner caps the attempts). One job reserved at a time per process.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": {
            # A message nobody acknowledged within this time is delivered again (the reaper acts sooner).
            "visibility_timeout": settings.visibility_timeout,
            # Celery's own keys (queues, unacknowledged messages) under the service's prefix too.
            "global_keyprefix": settings.redis_prefix,
        },
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "worker_send_task_events": False,
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            "sweep-expired-jobs": {"task": SWEEP_TASK, "schedule": settings.sweep_interval_seconds},
            "reap-lost-jobs": {"task": REAP_TASK, "schedule": settings.reap_interval_seconds},
        },
    }


def create_celery(settings: ServiceSettings) -> Celery:
    """A Celery app for sending tasks (the API) or inspecting workers (`celery -A worker.cli_app`)."""
    app = Celery("paints_undo", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


class TaskQueue:
    """Sends the service's tasks by name through the broker."""

    def __init__(self, celery: Celery):
        self.celery = celery

    def render(self, job_id: str) -> None:
        self.celery.send_task(RENDER_TASK, args=[job_id])

    def deliver_webhook(self, job_id: str, event: str, message_id: str, body: str, queued_at: float) -> None:
        self.celery.send_task(WEBHOOK_TASK, args=[job_id, event, message_id, body, queued_at])
