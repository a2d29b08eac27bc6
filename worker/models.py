"""The models a render worker keeps resident: where their files come from, and loading them once per process.

Files are fetched in the worker's main process before it forks (a missing checkpoint stops the worker
with a clear message, before it takes any job); each forked process then loads them onto its device in
a background thread, so the load neither blocks Celery's process start nor runs before the fork
(CUDA cannot be forked).
"""

import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

from jobs.settings import TINY_MODEL, ServiceSettings
from model_core.configs import TINY_BUCKETS
from model_core.errors import CheckpointError
from model_core.pipeline import ModelSources, PaintsUndoPipeline
from model_core.tiny import write_tiny_models

log = logging.getLogger(__name__)

# The published repos; the owner comes from PAINTS_UNDO_MODEL.
KEYFRAME_REPO_NAME = "paints_undo_single_frame"
INTERPOLATION_REPO_NAME = "paints_undo_multi_frame"
TAGGER_FILES = ["model.onnx", "selected_tags.csv"]


def fetch_models(settings: ServiceSettings) -> ModelSources:
    """Local folders holding the three checkpoints PAINTS_UNDO_MODEL names, downloading them when needed.

    `tiny` writes random-weight checkpoints in the published layout (tests and demos: the video is noise).
    Raises CheckpointError saying what to do when a folder or repo cannot be had.
    """
    if settings.model == TINY_MODEL:
        cache = settings.model_cache or Path(tempfile.gettempdir()) / "paints-undo"
        return write_tiny_models(Path(cache) / "tiny")
    if "/" in settings.model or settings.model.startswith("."):
        folder = Path(settings.model)
        if not folder.is_dir():
            raise CheckpointError(
                f"PAINTS_UNDO_MODEL={settings.model} is not a folder. Give a folder holding "
                "wd-v1-4-moat-tagger-v2/, paints_undo_single_frame/ and paints_undo_multi_frame/, "
                "a Hugging Face owner such as lllyasviel, or `tiny` for random test weights."
            )
        return ModelSources.from_folder(folder)
    owner = settings.model
    return ModelSources(
        tagger=_download(settings.tagger, settings, TAGGER_FILES),
        keyframe_model=_download(f"{owner}/{KEYFRAME_REPO_NAME}", settings),
        interpolation_model=_download(f"{owner}/{INTERPOLATION_REPO_NAME}", settings),
    )


def _download(repo_id: str, settings: ServiceSettings, allow_patterns: list[str] | None = None) -> Path:
    try:
        folder = snapshot_download(repo_id, cache_dir=settings.model_cache, allow_patterns=allow_patterns)
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as err:
        raise CheckpointError(
            f"could not download {repo_id} from Hugging Face ({err}). On a machine without internet access, "
            "download it elsewhere and set PAINTS_UNDO_MODEL to the folder, or PAINTS_UNDO_MODEL=tiny for tests."
        ) from err
    return Path(folder)


def load_pipeline(sources: ModelSources, settings: ServiceSettings) -> PaintsUndoPipeline:
    buckets = {"buckets": TINY_BUCKETS} if settings.model == TINY_MODEL else {}
    return PaintsUndoPipeline.from_pretrained(
        sources,
        device=settings.device,
        dtype=settings.dtype,
        low_memory=settings.low_memory,
        compile=settings.compile,
        **buckets,
    )


class ResidentPipeline:
    """The pipeline of this worker process: loaded once in the background, then kept.

    Its state (loading, ready, busy, failed) is published to Redis through `publish`, with a heartbeat,
    for /readyz.
    """

    HEARTBEAT_SECONDS = 15

    def __init__(self, load: Callable[[], PaintsUndoPipeline], publish: Callable[[dict], None], model: str):
        self._load = load
        self._publish = publish
        self._loaded = threading.Event()
        self._pipeline: PaintsUndoPipeline | None = None
        self._error: BaseException | None = None
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.model = model
        self.state = "loading"
        self.since = time.time()

    def start(self) -> None:
        threading.Thread(target=self._run_load, name="load-models", daemon=True).start()
        threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True).start()

    def get(self) -> PaintsUndoPipeline:
        """The loaded pipeline; waits for the load, and raises its error when it failed."""
        self._loaded.wait()
        if self._pipeline is None:
            raise CheckpointError(f"the models of this worker failed to load: {self._error}")
        return self._pipeline

    def set_state(self, state: str) -> None:
        self.state = state
        self.since = time.time()
        self._send()

    def _run_load(self) -> None:
        started = time.perf_counter()
        self._send()
        try:
            self._pipeline = self._load()
        except Exception as err:  # reported, and raised to each job by get()
            log.exception("loading the models failed")
            self._error = err
            self.set_state("failed")
        else:
            log.info("models loaded in %.1f s", time.perf_counter() - started)
            self.set_state("ready")
        self._loaded.set()

    def _send(self) -> None:
        state = {"name": self.name, "state": self.state, "model": self.model, "since": self.since}
        if self._error is not None:
            state["error"] = str(self._error)
        try:
            self._publish(state)
        except Exception:  # a Redis hiccup must not kill the load or the heartbeat
            log.warning("could not publish the worker state", exc_info=True)

    def _heartbeat(self) -> None:
        while True:
            time.sleep(self.HEARTBEAT_SECONDS)
            self._send()
