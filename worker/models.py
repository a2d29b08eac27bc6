"""The models a render worker keeps resident: where their files come from, and loading them once per process.

Files are fetched in the worker's main process before it forks (a missing checkpoint stops the worker
with a clear message, before it takes any job); each forked process then loads them onto its device in
a background thread, so the load neither blocks Celery's process start nor runs before the fork
(CUDA cannot be forked).
"""

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from jobs.settings import ServiceSettings
from model_core.configs import TINY_BUCKETS
from model_core.credentials import ContentCredentials
from model_core.errors import CheckpointError
from model_core.pipeline import PaintsUndoPipeline
from model_core.sources import TINY_MODEL, ModelSources, fetch_model_sources

log = logging.getLogger(__name__)


def fetch_models(settings: ServiceSettings) -> ModelSources:
    """Local folders holding the three checkpoints PAINTS_UNDO_MODEL names (`model_core.sources`).

    `tiny` writes random-weight checkpoints (tests and demos: the video is noise) under PAINTS_UNDO_MODEL_CACHE;
    an owner's repos are downloaded there. Raises CheckpointError saying what to do when one cannot be had.
    """
    return fetch_model_sources(settings.model, tagger=settings.tagger, cache_dir=settings.model_cache)


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


def load_credentials(settings: ServiceSettings) -> ContentCredentials | None:
    """The C2PA signing credentials of PAINTS_UNDO_C2PA_CERT and PAINTS_UNDO_C2PA_KEY; None when they are not set.

    Raises CredentialsError saying what is wrong with the files (checked by signing a probe).
    """
    if settings.c2pa_cert is None or settings.c2pa_key is None:
        return None
    return ContentCredentials.from_pem_files(settings.c2pa_cert, settings.c2pa_key)


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
