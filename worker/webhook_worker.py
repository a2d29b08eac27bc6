"""The webhook worker: delivers webhooks and runs the retention sweep. No GPU, no models.

    python -m worker.webhook_worker [extra `celery worker` options]

Deliveries run here, on their own queue, so a slow or dead receiver never holds up a render. The sweep
is scheduled by the scheduler process (python -m worker.scheduler), not here.
"""

import logging
import sys

import worker.webhook_tasks  # noqa: F401 (defines the tasks on the app)
from jobs.queue import WEBHOOK_QUEUE
from jobs.settings import ServiceSettings
from worker.app import configure


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = configure(ServiceSettings())
    options = ["--pool=threads", "--concurrency=8", f"--queues={WEBHOOK_QUEUE}", "--hostname=webhooks@%h"]
    app.worker_main(["worker", "--loglevel=INFO", "--without-gossip", "--without-mingle", *options, *(argv or [])])


if __name__ == "__main__":
    main(sys.argv[1:])
