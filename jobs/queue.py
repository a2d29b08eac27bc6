"""The Celery application: broker, queues and the reliability settings every process shares.

Light (no torch): the API sends tasks through it by name, without importing the task modules.
"""

from celery import Celery

from jobs.settings import RENDER_QUEUE, WEBHOOK_QUEUE, ServiceSettings

RENDER_TASK = "paints_undo.render"
WEBHOOK_TASK = "paints_undo.deliver_webhook"
SWEEP_TASK = "paints_undo.sweep_expired"


def create_celery(settings: ServiceSettings) -> Celery:
    app = Celery("paints_undo", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # job state lives in jobs.store, not in a result backend
        task_routes={
            RENDER_TASK: {"queue": RENDER_QUEUE},
            WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE},
            SWEEP_TASK: {"queue": WEBHOOK_QUEUE},
        },
        task_create_missing_queues=True,
        # A job is acknowledged only once it has finished, and a worker process that dies mid-job puts its job
        # back in the queue (worker.runner caps the attempts). One job reserved at a time per process.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A message nobody acknowledged within this time (its worker host vanished) is delivered again.
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        beat_schedule={
            "sweep-expired-jobs": {"task": SWEEP_TASK, "schedule": settings.sweep_interval_seconds},
        },
    )
    return app
