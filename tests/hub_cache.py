"""A Hugging Face cache laid out by hand, as `huggingface_hub` leaves it after a download (tests are offline)."""

import shutil
from pathlib import Path

REVISION = "0123456789abcdef0123456789abcdef01234567"


def hub_cache_with(repo_id: str, snapshot: Path, cache: Path) -> Path:
    """Lay `snapshot` out as huggingface_hub's cache does after a download of `repo_id` at main."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(snapshot, repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return cache
