"""The render worker: one Celery worker per GPU, running render jobs on models it keeps resident.

    python -m worker.render_worker [extra `celery worker` options]

Prefork with one process: the main process fetches the checkpoints and supervises; the forked process
loads the models once and runs one job at a time (acks late, prefetch 1: see jobs.queue). When that
process dies mid-job, Celery puts the job back in the queue and forks a new one.
"""

import logging
import sys

from celery.signals import worker_process_init

from jobs.queue import RENDER_QUEUE
from jobs.settings import ServiceSettings
from jobs.store import connect
from model_core.errors import CheckpointError, CredentialsError
from worker.app import configure
from worker.models import fetch_models, load_credentials
from worker.render_tasks import RenderTask, render

log = logging.getLogger("worker.render")


def start_process(**_: object) -> None:
    """In each forked process: load the models in the background (Celery kills this handler after 4 s)."""
    render.start()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ServiceSettings()
    try:
        connect(settings.redis_url).ping()
    except Exception as err:
        sys.exit(f"Redis at {settings.redis_url} is unreachable ({err}). Start it or set PAINTS_UNDO_REDIS_URL.")
    try:
        credentials = load_credentials(settings)
    except CredentialsError as err:
        sys.exit(f"cannot start the render worker: PAINTS_UNDO_C2PA_CERT/PAINTS_UNDO_C2PA_KEY: {err}")
    log.info("content credentials: %s", "signing every file" if credentials else "off (no PAINTS_UNDO_C2PA_CERT)")
    try:
        sources = fetch_models(settings)
    except CheckpointError as err:
        sys.exit(f"cannot start the render worker: {err}")
    RenderTask.settings = settings
    RenderTask.sources = sources
    limits = {"task_soft_time_limit": settings.job_soft_time_limit, "task_time_limit": settings.job_time_limit}
    app = configure(settings, **limits)
    worker_process_init.connect(start_process, weak=False)
    options = ["--pool=prefork", "--concurrency=1", f"--queues={RENDER_QUEUE}", "--hostname=render@%h"]
    app.worker_main(["worker", "--loglevel=INFO", "--without-gossip", "--without-mingle", *options, *(argv or [])])


if __name__ == "__main__":
    main(sys.argv[1:])
