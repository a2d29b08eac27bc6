"""The Celery app for the `celery` command line (health checks, inspection); it runs no tasks.

For example: celery -A worker.cli_app inspect ping --destination render@$HOSTNAME
"""

from jobs.queue import create_celery
from jobs.settings import ServiceSettings

app = create_celery(ServiceSettings())
