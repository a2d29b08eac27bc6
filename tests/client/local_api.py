"""A scripted HTTP server on a loopback port, standing in for the outside world the client talks to: each request
is recorded and gets the next of the answers a test queued (a status, an event stream, a dropped connection).

Imported as `local_api` (pytest puts this folder on sys.path for its test modules).
"""

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from paints_undo_client import AsyncClient, Client

Answer = Callable[[BaseHTTPRequestHandler], None]
API_KEY = "local-key-0123456789"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names in lowercase
    body: bytes


@dataclass
class LocalServer:
    url: str
    answers: list[Answer] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, *answers: Answer) -> None:
        with self.lock:
            self.answers.extend(answers)


@contextmanager
def local_server() -> Iterator[LocalServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server = LocalServer(f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.local = server  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, as uvicorn answers

    def handle_request(self) -> None:
        server: LocalServer = self.server.local  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {name.lower(): value for name, value in self.headers.items()}
        with server.lock:
            server.requests.append(Request(self.command, self.path, headers, body))
            answer = server.answers.pop(0) if server.answers else reply(500, {"error": "no answer queued"})
        answer(self)

    do_GET = do_POST = do_DELETE = handle_request

    def log_message(self, *args: object) -> None:
        pass


def reply(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
    """An answer with a JSON body (or raw bytes)."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
        handler.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return answer


def error(status: int, code: str, retry_after: int | None = None) -> Answer:
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return reply(status, {"error": {"code": code, "message": f"a {code} error"}}, headers)


def drop() -> Answer:
    """Close the connection without answering (a server or proxy that went away)."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)

    return answer


def event_stream(events: list[tuple[str, str, dict[str, Any]]], end: str = "close") -> Answer:
    """A text/event-stream of (id, type, data) messages, then: "close" ends it properly, "cut" stops in the middle
    of a message and drops the connection (the chunk it announced never completes)."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        chunks = [b": keep-alive\n\n"] + [sse(*event) for event in events]
        for chunk in chunks:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        if end == "close":
            handler.wfile.write(b"0\r\n\r\n")
        else:
            partial = b"id: 99-0\nevent: job.progress\ndata: {"
            handler.wfile.write(b"%x\r\n%s" % (len(partial) + 100, partial))
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)

    return answer


def sse(event_id: str, event_type: str, data: dict[str, Any]) -> bytes:
    return f"id: {event_id}\nevent: {event_type}\ndata: {json.dumps(data)}\n\n".encode()


def job_json(job_id: str = "job_0193a1b2c3d4e5f60718293a4b5c", **fields: Any) -> dict[str, Any]:
    """A job as the API returns it (the fields of its JobOut schema), succeeded unless `fields` say otherwise."""
    files = "http://files.invalid/jobs"
    return {
        "id": job_id,
        "status": "succeeded",
        "stage": None,
        "progress": 1.0,
        "queue_position": None,
        "eta_seconds": None,
        "created_at": "2026-11-30T10:00:00Z",
        "started_at": "2026-11-30T10:00:02Z",
        "finished_at": "2026-11-30T10:03:10Z",
        "prompt": "1girl, solo",
        "settings": {"undo_steps": [400, 800], "fps": 4},
        "keyframes": [
            {"index": 0, "undo_step": 400, "url": f"{files}/{job_id}/k/00.png"},
            {"index": 1, "undo_step": 800, "url": f"{files}/{job_id}/k/01.png"},
        ],
        "video": {"url": f"{files}/{job_id}/video.mp4", "width": 64, "height": 64, "frames": 45, "fps": 4},
        "outputs": [],
        "supplied_keyframes": 0,
        "error": None,
        "cancel_requested": False,
        "metadata": {"artwork_id": "art_42"},
        "webhook_url": None,
        "webhook_events": [],
        "webhook_attempts": [],
        **fields,
    }


def call(flavour: str, url: str, method: str, *args: Any, max_retries: int = 3, **kwargs: Any) -> Any:
    """`client.<method>(*args, **kwargs)` with a fresh Client ("sync") or AsyncClient ("async"), so one test
    checks both; an iterator's items come back as a list."""
    if flavour == "sync":
        with Client(url, API_KEY, max_retries=max_retries) as client:
            result = getattr(client, method)(*args, **kwargs)
            return list(result) if isinstance(result, Iterator) else result

    async def main() -> Any:
        async with AsyncClient(url, API_KEY, max_retries=max_retries) as client:
            result = getattr(client, method)(*args, **kwargs)
            if isinstance(result, AsyncIterator):
                return [item async for item in result]
            return await result

    return asyncio.run(main())
