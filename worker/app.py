"""The Celery app the workers define their tasks on (Celery's module-level app), configured by each
process's entry point from the settings (`configure`), not at import.

    render_tasks.py   the render task (torch, models)      → python -m worker.render_worker
    webhook_tasks.py  webhook delivery, retention sweep     → python -m worker.webhook_worker
    scheduler.py      Celery beat: the sweep's schedule     → python -m worker.scheduler
"""

from celery import Celery

from jobs.queue import celery_config
from jobs.settings import ServiceSettings

app = Celery("paints_undo", set_as_current=False)


def configure(settings: ServiceSettings, **extra: object) -> Celery:
    """Point the app at the broker and apply the service's Celery settings (plus `extra` ones)."""
    app.conf.update(celery_config(settings), **extra)
    return app
