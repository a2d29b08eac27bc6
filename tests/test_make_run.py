"""`make run`, the README's main command, as a newcomer meets it when something is missing."""

import os
import subprocess
from pathlib import Path

from services import free_port, start_redis_server

ROOT = Path(__file__).resolve().parent.parent


def test_make_run_stops_with_the_workers_message_when_the_render_worker_cannot_start(tmp_path: Path) -> None:
    with start_redis_server() as redis_url:
        env = {
            **os.environ,
            "PAINTS_UNDO_API_KEYS": "a-local-key-0123456789",
            "PAINTS_UNDO_REDIS_URL": redis_url,
            "PAINTS_UNDO_STORAGE_URL": f"file://{tmp_path / 'data'}",
            "PAINTS_UNDO_MODEL": str(tmp_path / "no-such-models"),
            "PAINTS_UNDO_SCHEDULE_FILE": str(tmp_path / "beat-schedule"),
            "PORT": str(free_port()),
        }
        # Its own session: `make run` ends by killing its process group.
        result = subprocess.run(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            start_new_session=True,
        )
    assert result.returncode != 0
    assert "cannot start the render worker" in result.stderr
    assert "no-such-models does not exist" in result.stderr
    assert "make run: a process of the service exited" in result.stderr
