"""`AsyncClient`: `Client` for asyncio (or trio), the same methods as coroutines and async iterators."""

import builtins
import inspect
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
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
from paints_undo_client.errors import APIConnectionError, APIError, PaintsUndoError, api_error
from paints_undo_client.models import Event, Job, JobPage, ProgressEvent, RenderSettings, TerminalEvent, parse_event

log = logging.getLogger("paints_undo_client")
T = TypeVar("T")


class AsyncClient:
    """`Client` with async methods:

        async with AsyncClient("https://paints-undo.example.com", "my-key") as client:
            job = await client.run("picture.png")
            await client.download(job, "out/")

    `on_progress` may be a plain function or a coroutine function.
    """

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 30.0, max_retries: int = 3):
        api_key = api_key or os.environ.get("PAINTS_UNDO_API_KEY")
        if not api_key:
            raise ValueError("give an api_key, or set PAINTS_UNDO_API_KEY")
        self.max_retries = max_retries
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, headers={"User-Agent": USER_AGENT})

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # --- jobs ---------------------------------------------------------------------------------------------

    async def submit(
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
        """See `Client.submit`."""
        files, fields = submission_form(image, keyframes, settings, metadata, webhook_url, webhook_events)
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        response = await self._request("POST", "/v1/jobs", files=files, data=fields, headers=headers)
        return Job.from_json(response.json())

    async def get(self, job: JobRef) -> Job:
        return Job.from_json((await self._request("GET", f"/v1/jobs/{job_id(job)}")).json())

    async def list(self, *, page_size: int = 20) -> AsyncIterator[Job]:
        """See `Client.list`: `async for job in client.list()`."""
        params: dict[str, str | int] = {"limit": page_size}
        while True:
            page = JobPage.from_json((await self._request("GET", "/v1/jobs", params=params)).json())
            for job in page.jobs:
                yield job
            if page.next_cursor is None:
                return
            params["cursor"] = page.next_cursor

    async def cancel(self, job: JobRef) -> Job:
        return Job.from_json((await self._request("POST", f"/v1/jobs/{job_id(job)}/cancel")).json())

    async def delete(self, job: JobRef) -> None:
        await self._request("DELETE", f"/v1/jobs/{job_id(job)}")

    # --- following a job ----------------------------------------------------------------------------------

    async def events(self, job: JobRef, *, last_event_id: str | None = None) -> AsyncIterator[Event]:
        """See `Client.events`: `async for event in client.events(job)`."""
        path = f"/v1/jobs/{job_id(job)}/events"
        decoder = SSEDecoder(last_event_id)
        attempt = 0  # tries since the last event
        while True:
            headers = {**self._auth, **({"Last-Event-ID": decoder.last_id} if decoder.last_id else {})}
            error: PaintsUndoError
            try:
                async with self._http.stream("GET", path, headers=headers, timeout=self._stream_timeout()) as response:
                    if response.status_code == 204:
                        return
                    if response.is_success:
                        async for line in response.aiter_lines():
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
                        await response.aread()
                        error = api_error(response)
            except httpx.TransportError as err:
                error = APIConnectionError(f"GET {path}: {err!r}")
                error.__cause__ = err
            delay = retry_delay(error, attempt, self.max_retries)
            if delay is None:
                raise error
            log.info("%s; resuming after event %s in %.1f s", error, decoder.last_id, delay)
            await anyio.sleep(delay)
            attempt += 1
            decoder = SSEDecoder(decoder.last_id)  # nothing of a message cut short carries over

    async def wait(
        self, job: JobRef, *, on_progress: Callable[[ProgressEvent], object | Awaitable[object]] | None = None
    ) -> Job:
        """See `Client.wait`."""
        async for event in self.events(job):
            if isinstance(event, TerminalEvent):  # a deleted job (no job in the event) is a NotFoundError
                return finished(event.job or await self.get(job))
            if isinstance(event, ProgressEvent) and on_progress is not None:
                if inspect.isawaitable(result := on_progress(event)):
                    await result
        raise APIConnectionError(f"the event stream of {job_id(job)} ended before the job did")

    async def run(
        self,
        image: ImageInput,
        *,
        settings: RenderSettings | Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
        keyframes: Sequence[ImageInput] = (),
        on_progress: Callable[[ProgressEvent], object | Awaitable[object]] | None = None,
    ) -> Job:
        """`submit` then `wait`."""
        submitted = await self.submit(image, settings=settings, metadata=metadata, keyframes=keyframes)
        return await self.wait(submitted, on_progress=on_progress)

    async def download(self, job: JobRef, folder: str | os.PathLike[str]) -> builtins.list[Path]:
        """See `Client.download`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for url, name in job_files(await self.get(job)):
            await self._with_retries(partial(self._save, url, folder / name))
            paths.append(folder / name)
        return paths

    # --- HTTP ---------------------------------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self._auth, **kwargs.pop("headers", {})}
        return await self._with_retries(partial(self._send, method, path, headers=headers, **kwargs))

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.TransportError as err:
            raise APIConnectionError(f"{method} {url}: {err!r}") from err
        if not response.is_success:
            raise api_error(response)
        return response

    async def _save(self, url: str, path: Path) -> None:
        part_file = path.with_name(path.name + ".part")
        try:
            async with self._http.stream("GET", url) as response:
                if not response.is_success:
                    await response.aread()
                    raise api_error(response)
                async with await anyio.open_file(part_file, "wb") as out:
                    async for chunk in response.aiter_bytes():
                        await out.write(chunk)
        except httpx.TransportError as err:
            raise APIConnectionError(f"GET {path.name}: {err!r}") from err
        part_file.replace(path)

    async def _with_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            try:
                return await call()
            except (APIError, APIConnectionError) as error:
                delay = retry_delay(error, attempt, self.max_retries)
                if delay is None:
                    raise
                log.info("%s; retry %d of %d in %.1f s", error, attempt + 1, self.max_retries, delay)
            await anyio.sleep(delay)
            attempt += 1

    def _stream_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self._http.timeout.connect, read=STREAM_READ_TIMEOUT)
