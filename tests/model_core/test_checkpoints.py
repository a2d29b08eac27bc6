"""Finding checkpoints: local folders, the Hugging Face cache, and the errors when neither has them."""

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hub_cache import hub_cache_with
from PIL import Image
from services import free_port

from model_core.checkpoints import HUB_TIMEOUT_SECONDS, resolve_checkpoint
from model_core.errors import CheckpointError
from model_core.keyframes import KeyframeModel
from model_core.tagger import Tagger


def test_a_local_folder_is_used_as_is(keyframe_checkpoint):
    assert resolve_checkpoint(keyframe_checkpoint) == keyframe_checkpoint
    assert resolve_checkpoint(str(keyframe_checkpoint)) == keyframe_checkpoint


def test_models_load_from_the_hub_cache_by_repo_id(keyframe_checkpoint, tagger_checkpoint, tmp_path):
    cache = hub_cache_with("lllyasviel/paints_undo_single_frame", keyframe_checkpoint, tmp_path)
    hub_cache_with("SmilingWolf/wd-v1-4-moat-tagger-v2", tagger_checkpoint, tmp_path)
    model = KeyframeModel.from_pretrained(cache_dir=cache, local_files_only=True)
    assert model.unet.conv_in.in_channels == 8
    assert Tagger.from_pretrained(cache_dir=cache, local_files_only=True).size == 64


def test_a_repo_missing_offline_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="'someone/absent' .* is not in the Hugging Face cache"):
        KeyframeModel.from_pretrained("someone/absent", cache_dir=tmp_path, local_files_only=True)


@pytest.mark.parametrize("name", ["./no/such/folder", "/no/such/folder", "not-a-repo-id", "a/b/c"])
def test_a_missing_folder_is_not_mistaken_for_a_repo(name):
    with pytest.raises(CheckpointError, match="neither an existing folder nor a Hugging Face repo id"):
        resolve_checkpoint(name)


@pytest.fixture
def silent_hub():
    """A server that accepts connections and never answers (a hung proxy or hub)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.extend(iter(lambda: server.accept()[0], None)), daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for connection in accepted:
        connection.close()


def tag(picture: Path, env: dict[str, str], cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_DISABLE_TELEMETRY": "1", **env}
    command = [sys.executable, "-m", "model_core.cli", "tag", str(picture)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    Image.new("RGB", (64, 64), "white").save(tmp_path / "picture.png")
    return tmp_path / "picture.png"


def test_a_hub_that_never_answers_is_a_clear_error_in_seconds(silent_hub, picture, tmp_path):
    started = time.monotonic()
    result = tag(picture, {"HF_ENDPOINT": silent_hub}, tmp_path / "cache")
    assert result.returncode == 3, result.stderr
    assert f"Fetching SmilingWolf/wd-v1-4-moat-tagger-v2 from {silent_hub}" in result.stderr
    assert "Could not fetch the checkpoint" in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - started < HUB_TIMEOUT_SECONDS + 120  # not forever (it was)


def test_a_refusing_proxy_is_a_clear_error(picture, tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    result = tag(picture, {"HTTPS_PROXY": closed, "HTTP_PROXY": closed}, tmp_path / "cache")
    assert result.returncode == 3, result.stderr
    assert "proxy" in result.stderr and "Traceback" not in result.stderr


def test_a_silent_hub_falls_back_to_the_cached_copy(silent_hub, picture, tagger_checkpoint, tmp_path):
    cache = hub_cache_with("SmilingWolf/wd-v1-4-moat-tagger-v2", tagger_checkpoint, tmp_path / "cache")
    result = tag(picture, {"HF_ENDPOINT": silent_hub}, cache)
    assert result.returncode == 0, result.stderr
    assert "using the cached copy" in result.stderr
