"""The Python client (clients/python, `paints_undo_client`) against the real service: uvicorn, a Celery render worker
on the tiny checkpoints, Redis, moto's S3 server. Every job is dave's (conftest's KEYS), and each test ends with
none of them active."""

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import (
    FAST_SETTINGS,
    JOB_DEADLINE,
    KEYS,
    MAX_ACTIVE_JOBS,
    SLOW_SETTINGS,
    WEBHOOK_SECRET,
    Stack,
    png,
    wait_until,
)
from paints_undo_client import (
    AsyncClient,
    Client,
    Job,
    JobCanceledError,
    ProgressEvent,
    RateLimitError,
    TerminalEvent,
    verify_webhook,
)
from PIL import Image
from services import TcpProxy

pytestmark = pytest.mark.timeout(1800)
API_KEY = KEYS["dave"]
EXAMPLE = Path(__file__).parents[2] / "clients" / "python" / "examples" / "render.py"


@pytest.fixture
def client(stack: Stack) -> Iterator[Client]:
    with Client(stack.api_url, API_KEY) as client:
        yield client


class RawReceiver:
    """A webhook endpoint keeping each delivery's headers and raw body, as a receiving app gets them."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        received = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append((dict(self.headers), self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def header_values(proxy: TcpProxy, name: str) -> list[str | None]:
    """The header's value in each GET request sent through the proxy (None where it was absent)."""
    heads = [block.split(b"\r\n\r\n", 1)[0] for block in bytes(proxy.sent).split(b"GET ")[1:]]
    prefix = f"{name.lower()}: ".encode()
    return [
        next((line[len(prefix) :].decode() for line in head.split(b"\r\n") if line.lower().startswith(prefix)), None)
        for head in heads
    ]


def test_submit_wait_download_list_and_verified_webhooks(client: Client, stack: Stack, tmp_path: Path) -> None:
    receiver = RawReceiver()
    picture = tmp_path / "picture.png"
    picture.write_bytes(png(seed=21))
    try:
        submitted = client.submit(
            picture, settings=FAST_SETTINGS, metadata={"artwork_id": "art_7"}, webhook_url=receiver.url
        )
        assert submitted.status == "queued" and submitted.metadata == {"artwork_id": "art_7"}
        progress: list[ProgressEvent] = []
        job = client.wait(submitted, on_progress=progress.append)

        assert job.id == submitted.id and job.status == "succeeded" and job.video is not None
        fractions = [event.progress for event in progress]
        assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
        assert [(e.index, e.undo_step) for e in progress if e.type == "job.keyframe"] == [(0, 400), (1, 800)]
        assert [output.kind for output in job.outputs] == ["video"]

        paths = client.download(job, tmp_path / "out")
        assert [path.name for path in paths] == ["video.mp4", "keyframe_00_undo400.png", "keyframe_01_undo800.png"]
        assert paths[0].read_bytes()[4:8] == b"ftyp" and paths[0].stat().st_size == job.outputs[0].bytes
        assert all(Image.open(path).size == (256, 256) for path in paths[1:])

        assert submitted.id in [listed.id for listed in client.list(page_size=1)]  # one job per page

        deliveries = wait_until(
            lambda: len(receiver.deliveries) == 4 and receiver.deliveries, 60, "the job's four webhooks"
        )
        events = [verify_webhook(headers, body, WEBHOOK_SECRET) for headers, body in deliveries]
        assert [event.type for event in events] == ["job.started", "job.keyframe", "job.keyframe", "job.succeeded"]
        assert {event.data.id for event in events} == {job.id} and len({event.id for event in events}) == 4
        assert events[-1].data.video is not None and events[-1].data.video.frames == job.video.frames
    finally:
        receiver.server.shutdown()


def test_a_repeated_idempotency_key_returns_the_same_job(client: Client) -> None:
    image = png(seed=22)
    first = client.submit(image, settings=FAST_SETTINGS, idempotency_key="dave-order-1")
    again = client.submit(image, settings=FAST_SETTINGS, idempotency_key="dave-order-1")
    assert again.id == first.id
    client.delete(first)


def test_events_resume_through_dropped_connections(client: Client, stack: Stack) -> None:
    # Cut while the job runs (the last keyframe leaves the interpolation and encoding to come), so the client
    # cannot have the rest of the stream in its buffers already.
    job = client.submit(png(seed=23), settings={**FAST_SETTINGS, "video_steps": 8})
    proxy = TcpProxy(int(stack.api_url.rsplit(":", 1)[1]))
    proxy.restore()
    seen = []
    try:
        with Client(proxy.url, API_KEY, max_retries=10) as through_proxy:
            for event in through_proxy.events(job):
                seen.append(event)
                if event.type == "job.started":
                    proxy.cut()  # mid-stream; back at once
                    proxy.restore()
                elif event.type == "job.keyframe" and event.index == 1:
                    proxy.cut()  # refused for a second: the client retries until it is back
                    threading.Timer(1.0, proxy.restore).start()
        everything = list(client.events(job))  # straight from the API, after the job ended
    finally:
        proxy.cut()
        client.delete(job)

    assert [(e.id, e.type) for e in seen] == [(e.id, e.type) for e in everything], "each event once, in order"
    assert isinstance(seen[-1], TerminalEvent) and seen[-1].job.status == "succeeded"
    resumed_after = header_values(proxy, "Last-Event-ID")
    assert resumed_after[0] is None and len(resumed_after) >= 3
    assert set(resumed_after[1:]) <= {e.id for e in seen[1:-1]}, "resumed after events it had, never from scratch"


def test_a_429_is_retried_after_its_retry_after_until_a_slot_frees(stack: Stack) -> None:
    retried = threading.Event()

    class OnRetry(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "too_many_active_jobs" in record.getMessage():
                retried.set()

    logger = logging.getLogger("paints_undo_client")
    handler, level = OnRetry(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    with Client(stack.api_url, API_KEY, max_retries=0) as impatient, Client(stack.api_url, API_KEY) as patient:
        slow: list[Job] = []
        accepted: list[Job] = []
        try:
            for n in range(MAX_ACTIVE_JOBS):
                slow.append(impatient.submit(png(seed=30 + n), settings=SLOW_SETTINGS))
            with pytest.raises(RateLimitError) as refused:
                impatient.submit(png(seed=40), settings=FAST_SETTINGS)
            assert refused.value.code == "too_many_active_jobs" and refused.value.retry_after

            with ThreadPoolExecutor(1) as pool:
                started = time.monotonic()
                submission = pool.submit(patient.submit, png(seed=41), settings=FAST_SETTINGS)
                assert retried.wait(120), "the client got the 429 and waits to retry"
                impatient.cancel(slow[-1])  # frees a slot
                accepted.append(submission.result(timeout=300))
                waited = time.monotonic() - started
            assert accepted[0].status in ("queued", "running") and waited >= refused.value.retry_after
            with pytest.raises(JobCanceledError) as canceled:
                impatient.wait(slow[-1])
            assert canceled.value.job.id == slow[-1].id
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
            for job in slow + accepted:
                impatient.delete(job)


def test_the_async_client_with_supplied_keyframes_outputs_and_stop_after(stack: Stack, tmp_path: Path) -> None:
    snapshot = Image.open(io.BytesIO(png(seed=51)))

    async def main() -> tuple[Job, list[Path], Job, list[Path]]:
        async with AsyncClient(stack.api_url, API_KEY) as client:
            progress: list[float] = []

            async def on_progress(event: ProgressEvent) -> None:
                progress.append(event.progress)

            settings = {**FAST_SETTINGS, "outputs": ["preview", "frames"]}
            del settings["undo_steps"]  # the supplied keyframes take their place
            full = await client.run(
                png(seed=50), settings=settings, keyframes=[png(seed=52), snapshot], on_progress=on_progress
            )
            assert progress and progress[-1] == pytest.approx(1.0)
            full_files = await client.download(full, tmp_path / "full")

            keyframes_only = await client.run(png(seed=53), settings={**FAST_SETTINGS, "stop_after": "keyframes"})
            keyframe_files = await client.download(keyframes_only, tmp_path / "keyframes")
            assert full.id in [job.id async for job in client.list()]
            for job in (full, keyframes_only):
                await client.delete(job)
            return full, full_files, keyframes_only, keyframe_files

    full, full_files, keyframes_only, keyframe_files = asyncio.run(main())
    assert full.supplied_keyframes == 2 and full.keyframes == []
    assert [output.kind for output in full.outputs] == ["video", "preview", "frames"]
    assert [path.name for path in full_files] == ["video.mp4", "preview.webp", "frames.zip"]
    assert [path.stat().st_size for path in full_files] == [output.bytes for output in full.outputs]
    assert keyframes_only.video is None and keyframes_only.outputs == []
    assert [path.name for path in keyframe_files] == ["keyframe_00_undo400.png", "keyframe_01_undo800.png"]


def test_the_example_script_renders_and_saves_the_files(stack: Stack, tmp_path: Path) -> None:
    picture = tmp_path / "picture.png"
    picture.write_bytes(png(seed=60))
    command = [sys.executable, str(EXAMPLE), str(picture), "--url", stack.api_url, "--out", str(tmp_path / "drawing")]
    command += ["--settings", json.dumps(FAST_SETTINGS)]
    env = {**os.environ, "PAINTS_UNDO_API_KEY": API_KEY}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=JOB_DEADLINE)
    print(result.stdout)  # shown with pytest -rP
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("job job_") and lines[0].endswith(": queued")
    assert [line.split()[-1] for line in lines if line.startswith("saved ")] == [
        str(tmp_path / "drawing" / name) for name in ("video.mp4", "keyframe_00_undo400.png", "keyframe_01_undo800.png")
    ]
