"""`Client`: the paints-undo API over httpx, blocking. `AsyncClient` (async_client.py) mirrors it method for method."""

import builtins
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx

from paints_undo_client._core import (
    STREAM_READ_TIMEOUT,
    USER_AGENT,
    ImageInput,
    JobRef,
    SSEDecoder,
    finished,
    job_files,
    job_id,
    retry_delay,
    submission_form,
)
from paints_undo_client.errors import (
    APIConnectionError,
    APIError,
    PaintsUndoError,
    api_error,
)
from paints_undo_client.models import (
    Event,
    Job,
    JobPage,
    ProgressEvent,
    RenderSettings,
    TerminalEvent,
    parse_event,
)

log = logging.getLogger("paints_undo_client")
T = TypeVar("T")


class Client:
    """A client of one paints-undo service, for one API key.

        with Client("https://paints-undo.example.com", "my-key") as client:
            job = client.run("picture.png", settings={"fps": 8})
            client.download(job, "out/")

    `api_key` defaults to the PAINTS_UNDO_API_KEY environment variable. 429 and 503 answers are retried after
    their Retry-After, and connection errors with backoff, up to `max_retries` times per call.
    """

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 30.0, max_retries: int = 3):
        api_key = api_key or os.environ.get("PAINTS_UNDO_API_KEY")
        if not api_key:
            raise ValueError("give an api_key, or set PAINTS_UNDO_API_KEY")
        self.max_retries = max_retries
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._http = httpx.Client(base_url=base_url, timeout=timeout, headers={"User-Agent": USER_AGENT})

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- jobs ---------------------------------------------------------------------------------------------

    def submit(
        self,
        image: ImageInput,
        *,
        settings: RenderSettings | Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
        webhook_url: str | None = None,
        webhook_events: Sequence[str] | None = None,
        keyframes: Sequence[ImageInput] = (),
        idempotency_key: str | None = None,
    ) -> Job:
        """Submit a finished picture; returns the queued job.

        `keyframes` are the artist's own snapshots, earliest first. Without an `idempotency_key` one is made up,
        so a retry of this call (after a dropped connection, say) never makes a second job.
        """
        files, fields = submission_form(image, keyframes, settings, metadata, webhook_url, webhook_events)
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        response = self._request("POST", "/v1/jobs", files=files, data=fields, headers=headers)
        return Job.from_json(response.json())

    def get(self, job: JobRef) -> Job:
        """The job as it is now, its URLs minted afresh."""
        return Job.from_json(self._request("GET", f"/v1/jobs/{job_id(job)}").json())

    def list(self, *, page_size: int = 20) -> Iterator[Job]:
        """Every job of this key, newest first, fetching `page_size` (1..100) at a time."""
        params: dict[str, str | int] = {"limit": page_size}
        while True:
            page = JobPage.from_json(self._request("GET", "/v1/jobs", params=params).json())
            yield from page.jobs
            if page.next_cursor is None:
                return
            params["cursor"] = page.next_cursor

    def cancel(self, job: JobRef) -> Job:
        """Cancel: a queued job ends canceled now; a running one (`cancel_requested`) at its next step."""
        return Job.from_json(self._request("POST", f"/v1/jobs/{job_id(job)}/cancel").json())

    def delete(self, job: JobRef) -> None:
        """Cancel the job if it is unfinished, and delete it with its files."""
        self._request("DELETE", f"/v1/jobs/{job_id(job)}")

    # --- following a job ----------------------------------------------------------------------------------

    def events(self, job: JobRef, *, last_event_id: str | None = None) -> Iterator[Event]:
        """The job's events from the start (or after `last_event_id`), ending with its terminal event.

        A dropped connection is resumed with Last-Event-ID: every event comes once, in order.
        """
        path = f"/v1/jobs/{job_id(job)}/events"
        decoder = SSEDecoder(last_event_id)
        attempt = 0  # tries since the last event
        while True:
            headers = {**self._auth, **({"Last-Event-ID": decoder.last_id} if decoder.last_id else {})}
            error: PaintsUndoError
            try:
                with self._http.stream("GET", path, headers=headers, timeout=self._stream_timeout()) as response:
                    if response.status_code == 204:
                        return  # the job had ended, with nothing after last_event_id
                    if response.is_success:
                        for line in response.iter_lines():
                            if (message := decoder.feed(line)) is None:
                                continue
                            attempt = 0
                            event = parse_event(message.id, message.event, json.loads(message.data))
                            if event is not None:
                                yield event
                            if isinstance(event, TerminalEvent):
                                return
                        error = APIConnectionError(f"the event stream of {path} ended before the job did")
                    else:
                        response.read()
                        error = api_error(response)
            except httpx.TransportError as err:
                error = APIConnectionError(f"GET {path}: {err!r}")
                error.__cause__ = err
            delay = retry_delay(error, attempt, self.max_retries)
            if delay is None:
                raise error
            log.info("%s; resuming after event %s in %.1f s", error, decoder.last_id, delay)
            time.sleep(delay)
            attempt += 1
            decoder = SSEDecoder(decoder.last_id)  # nothing of a message cut short carries over

    def wait(self, job: JobRef, *, on_progress: Callable[[ProgressEvent], object] | None = None) -> Job:
        """Follow the job's events until it ends; returns the succeeded job (video and outputs included).

        `on_progress` is called with each progress event (stages, steps, the prompt, each keyframe). Raises
        JobFailedError (with the job's error code) or JobCanceledError when the job ends otherwise.
        """
        for event in self.events(job):
            if isinstance(event, TerminalEvent):  # a deleted job (no job in the event) is a NotFoundError
                return finished(event.job or self.get(job))
            if isinstance(event, ProgressEvent) and on_progress is not None:
                on_progress(event)
        raise APIConnectionError(f"the event stream of {job_id(job)} ended before the job did")

    def run(
        self,
        image: ImageInput,
        *,
        settings: RenderSettings | Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
        keyframes: Sequence[ImageInput] = (),
        on_progress: Callable[[ProgressEvent], object] | None = None,
    ) -> Job:
        """`submit` then `wait`: the succeeded job, or JobFailedError / JobCanceledError."""
        submitted = self.submit(image, settings=settings, metadata=metadata, keyframes=keyframes)
        return self.wait(submitted, on_progress=on_progress)

    def download(self, job: JobRef, folder: str | os.PathLike[str]) -> builtins.list[Path]:
        """Save the job's files into `folder` (made if missing); returns their paths.

        video.mp4, the other outputs (preview.webp, frames.zip) and keyframe_NN_undoSSS.png for each keyframe;
        a job without a video (stop_after "keyframes") has only its keyframes. The job is read again first, so
        its URLs are fresh.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for url, name in job_files(self.get(job)):
            self._with_retries(partial(self._save, url, folder / name))
            paths.append(folder / name)
        return paths

    # --- HTTP ---------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self._auth, **kwargs.pop("headers", {})}
        return self._with_retries(partial(self._send, method, path, headers=headers, **kwargs))

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TransportError as err:
            raise APIConnectionError(f"{method} {url}: {err!r}") from err
        if not response.is_success:
            raise api_error(response)
        return response

    def _save(self, url: str, path: Path) -> None:
        """GET a file's URL (no API key: it is signed) into `path`, through a partial file."""
        part_file = path.with_name(path.name + ".part")
        try:
            with self._http.stream("GET", url) as response:
                if not response.is_success:
                    response.read()
                    raise api_error(response)
                with part_file.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
        except httpx.TransportError as err:
            raise APIConnectionError(f"GET {path.name}: {err!r}") from err
        part_file.replace(path)

    def _with_retries(self, call: Callable[[], T]) -> T:
        attempt = 0
        while True:
            try:
                return call()
            except (APIError, APIConnectionError) as error:
                delay = retry_delay(error, attempt, self.max_retries)
                if delay is None:
                    raise
                log.info("%s; retry %d of %d in %.1f s", error, attempt + 1, self.max_retries, delay)
            time.sleep(delay)
            attempt += 1

    def _stream_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self._http.timeout.connect, read=STREAM_READ_TIMEOUT)
