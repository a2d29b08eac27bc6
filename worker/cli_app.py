"""The Celery app for the `celery` command line (health checks, inspection); it runs no tasks.

For example: celery -A worker.cli_app inspect ping --destination render@$HOSTNAME
"""

from worker.app import create_celery
from worker.config import ServiceSettings

app = create_celery(ServiceSettings())
