"""The whole service on this machine for end-to-end tests: a private redis-server, moto's S3 server, uvicorn
serving the API, a real Celery render worker on the tiny checkpoints, the webhook worker, and a local webhook
receiver that verifies signatures."""

import base64
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import httpx
import numpy as np
import pytest
from c2pa_certs import SigningChain, make_signing_chain
from PIL import Image
from services import free_port, start_moto_server, start_redis_server, wait_for_http
from standardwebhooks.webhooks import Webhook

BUCKET = "paints-undo-e2e"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"e2e-webhook-secret-of-32-bytes!!").decode()
KEYS = {
    "alice": "alice-key-0123456789abcdef",
    "bob": "bob-key-0123456789abcdef00",
    "carol": "carol-key-0123456789abcdef",
    "dave": "dave-key-0123456789abcdef0",  # tests/e2e/test_client.py
    "erin": "erin-key-0123456789abcdef0",  # tests/e2e/test_playground.py
}
MAX_ACTIVE_JOBS = 3
MAX_UPLOAD_BYTES = 300_000
MAX_PIXELS = 1_000_000
# Small jobs for the tiny models: 2 keyframes, 3 clips of 40x40.
FAST_SETTINGS = {"undo_steps": [400, 800], "width": 256, "height": 256, "keyframe_steps": 2, "video_steps": 2}
# How long a test waits for something a job does: generous, so the suite passes on a machine whose cores
# are busy with other work (a tiny job that takes 2 s idle took over 3 min under a load of 10).
JOB_DEADLINE = 420
# As `make run` and compose start uvicorn: the API answers oversized headers itself (431).
UVICORN_HEADERS = ["--http", "h11", "--h11-max-incomplete-event-size", "1048576"]
# Jobs that run for several seconds, to act on them while they run.
SLOW_SETTINGS = {**FAST_SETTINGS, "keyframe_steps": 60, "video_steps": 20}


@dataclass
class Delivery:
    headers: dict[str, str]
    body: dict[str, Any]
    status: int


@dataclass
class WebhookReceiver:
    """Records every delivery. Answers 401 to a bad signature, and 500 to the first `failures[job_id]` of a job."""

    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def for_job(self, job_id: str) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if d.body.get("data", {}).get("id") == job_id]


def start_receiver() -> tuple[WebhookReceiver, ThreadingHTTPServer]:
    verifier = Webhook(WEBHOOK_SECRET)
    port = free_port()
    receiver = WebhookReceiver(f"http://127.0.0.1:{port}/hooks")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["content-length"]))
            headers = {name.lower(): value for name, value in self.headers.items()}
            try:
                body = verifier.verify(raw, headers)
                status = 200
            except Exception:
                body, status = json.loads(raw), 401
            with receiver.lock:
                job_id = body.get("data", {}).get("id")
                if status == 200 and receiver.failures.get(job_id, 0) > 0:
                    receiver.failures[job_id] -= 1
                    status = 500
                receiver.deliveries.append(Delivery(headers, body, status))
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver, server


@dataclass
class Stack:
    api_url: str
    env: dict[str, str]
    receiver: WebhookReceiver
    s3: Any
    logs: Path
    processes: list[subprocess.Popen]
    signing: SigningChain  # the render worker signs every file with it (C2PA)
    render_worker: subprocess.Popen | None = None

    def client(self, user: str | None = "alice") -> httpx.Client:
        headers = {"Authorization": f"Bearer {KEYS[user]}"} if user else {}
        return httpx.Client(base_url=self.api_url, headers=headers, timeout=30)

    def start_render_worker(self) -> subprocess.Popen:
        self.render_worker = launch([sys.executable, "-m", "worker.render_worker"], self.env, self.logs / "render.log")
        self.processes.append(self.render_worker)
        return self.render_worker


def launch(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_until(check: Callable[[], Any], timeout: float = JOB_DEADLINE, what: str = "condition") -> Any:
    """Polls `check` until it returns something truthy; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("e2e-logs")
    with start_redis_server() as redis_url, start_moto_server() as s3_url:
        credentials = {"AWS_ACCESS_KEY_ID": "e2e", "AWS_SECRET_ACCESS_KEY": "e2e", "AWS_DEFAULT_REGION": "us-east-1"}
        s3 = boto3.client("s3", endpoint_url=s3_url, **{k.lower(): v for k, v in credentials.items() if "KEY" in k})
        s3.create_bucket(Bucket=BUCKET)
        receiver, receiver_server = start_receiver()
        signing = make_signing_chain(tmp_path_factory.mktemp("c2pa"))
        port = free_port()
        env = {
            **os.environ,
            **credentials,
            "PORT": str(port),
            "PAINTS_UNDO_REDIS_URL": redis_url,
            "PAINTS_UNDO_STORAGE_URL": f"s3://{BUCKET}/e2e",
            "PAINTS_UNDO_S3_ENDPOINT_URL": s3_url,
            "PAINTS_UNDO_API_KEYS": ",".join(KEYS.values()),
            "PAINTS_UNDO_MAX_ACTIVE_JOBS": str(MAX_ACTIVE_JOBS),
            "PAINTS_UNDO_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
            "PAINTS_UNDO_MAX_PIXELS": str(MAX_PIXELS),
            "PAINTS_UNDO_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "PAINTS_UNDO_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
            "PAINTS_UNDO_WEBHOOK_BACKOFF_SECONDS": "0.5",
            "PAINTS_UNDO_MODEL": "tiny",
            "PAINTS_UNDO_MODEL_CACHE": str(tmp_path_factory.mktemp("models")),
            "PAINTS_UNDO_MAX_ATTEMPTS": "3",
            "PAINTS_UNDO_C2PA_CERT": str(signing.cert),
            "PAINTS_UNDO_C2PA_KEY": str(signing.key),
        }
        api = launch(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "api.main:create_app",
                "--port",
                str(port),
                *UVICORN_HEADERS,
            ],
            env,
            logs / "api.log",
        )
        webhooks = launch([sys.executable, "-m", "worker.webhook_worker"], env, logs / "webhooks.log")
        stack = Stack(f"http://127.0.0.1:{port}", env, receiver, s3, logs, [api, webhooks], signing)
        stack.start_render_worker()
        try:
            wait_for_http(f"{stack.api_url}/healthz", api)
            with stack.client() as client:
                ready = lambda: any(w["state"] == "ready" for w in client.get("/readyz").json().get("workers", []))  # noqa: E731
                wait_until(ready, timeout=JOB_DEADLINE, what="a render worker with its models loaded")
            yield stack
        except BaseException:
            for log in sorted(logs.iterdir()):
                print(f"==== {log.name}\n{log.read_text(errors='replace')[-5000:]}")
            raise
        finally:
            for process in stack.processes:
                stop(process)
            receiver_server.shutdown()


def png(width: int = 80, height: int = 96, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def submit(
    client: httpx.Client, settings: dict | None = None, image: bytes | None = None, **form: str
) -> httpx.Response:
    data = {**form, **({"settings": json.dumps(settings)} if settings is not None else {})}
    return client.post("/v1/jobs", files={"image": ("picture.png", image or png(), "image/png")}, data=data)


def job(client: httpx.Client, job_id: str) -> dict:
    response = client.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


def wait_status(client: httpx.Client, job_id: str, *statuses: str, timeout: float = JOB_DEADLINE) -> dict:
    return wait_until(
        lambda: (body := job(client, job_id))["status"] in statuses and body, timeout, f"{job_id} to be {statuses}"
    )
