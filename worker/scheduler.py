"""The scheduler: Celery beat, its own process, sending the retention sweep every
PAINTS_UNDO_SWEEP_INTERVAL_SECONDS to the webhook workers. Run exactly one per deployment.

    python -m worker.scheduler [extra `celery beat` options]

Beat only sends tasks by name; it imports no task code and no torch. Its own bookkeeping (when each
entry last ran) goes to PAINTS_UNDO_SCHEDULE_FILE, so a restart does not reset the schedule.
"""

import logging
import sys

from jobs.settings import ServiceSettings
from worker.app import configure


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ServiceSettings()
    app = configure(settings)
    app.start(["beat", "--loglevel=INFO", f"--schedule={settings.schedule_file}", *(argv or [])])


if __name__ == "__main__":
    main(sys.argv[1:])
