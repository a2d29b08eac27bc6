"""The client's requests, retries, errors and downloads against a scripted local HTTP server (tests/client/
local_api.py); each test runs with Client and with AsyncClient (the `flavour` fixture)."""

import email
import io
import json
import time
import uuid
from pathlib import Path

import pytest
from local_api import API_KEY, LocalServer, call, drop, error, job_json, reply
from paints_undo_client import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    Job,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
)
from PIL import Image
from services import free_port

JOB_ID = "job_0193a1b2c3d4e5f60718293a4b5c"


def test_a_429_is_retried_after_its_retry_after_with_the_same_idempotency_key(
    server: LocalServer, flavour: str
) -> None:
    server.answer(error(429, "too_many_active_jobs", retry_after=1), reply(202, job_json(status="queued")))
    started = time.monotonic()
    job = call(flavour, server.url, "submit", b"\x89PNG picture")
    assert time.monotonic() - started >= 1.0
    assert isinstance(job, Job) and job.status == "queued"
    first, second = server.requests
    assert first.method == second.method == "POST" and first.path == "/v1/jobs"
    assert first.headers["authorization"] == f"Bearer {API_KEY}"
    key = first.headers["idempotency-key"]
    assert uuid.UUID(key) and second.headers["idempotency-key"] == key, "one key for every try of one submission"
    content_type = first.headers["content-type"]
    assert form_parts(first.body, content_type) == form_parts(second.body, second.headers["content-type"])


def test_each_submission_gets_its_own_idempotency_key(server: LocalServer) -> None:
    server.answer(reply(202, job_json(JOB_ID)), reply(202, job_json(JOB_ID.replace("0", "1"))))
    call("sync", server.url, "submit", b"picture")
    call("sync", server.url, "submit", b"picture")
    assert len({request.headers["idempotency-key"] for request in server.requests}) == 2


def test_when_the_retries_run_out_the_typed_error_carries_the_code(server: LocalServer, flavour: str) -> None:
    server.answer(*[error(503, "service_unavailable", retry_after=0)] * 3)
    with pytest.raises(ServiceUnavailableError) as raised:
        call(flavour, server.url, "get", JOB_ID, max_retries=2)
    assert (raised.value.status, raised.value.code, raised.value.retry_after) == (503, "service_unavailable", 0.0)
    assert len(server.requests) == 3


def test_a_429_without_retries_is_a_rate_limit_error(server: LocalServer) -> None:
    server.answer(error(429, "too_many_active_jobs", retry_after=30))
    with pytest.raises(RateLimitError) as raised:
        call("sync", server.url, "submit", b"picture", max_retries=0)
    assert raised.value.code == "too_many_active_jobs" and raised.value.retry_after == 30.0


def test_a_dropped_connection_is_retried(server: LocalServer, flavour: str) -> None:
    server.answer(drop(), reply(200, job_json(JOB_ID)))
    assert call(flavour, server.url, "get", JOB_ID).id == JOB_ID
    assert [request.path for request in server.requests] == [f"/v1/jobs/{JOB_ID}"] * 2


def test_an_unreachable_api_is_an_api_connection_error(flavour: str) -> None:
    started = time.monotonic()
    with pytest.raises(APIConnectionError):
        call(flavour, f"http://127.0.0.1:{free_port()}", "get", JOB_ID, max_retries=1)
    assert time.monotonic() - started >= 0.25  # one backoff: 0.5 s with jitter down to half


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (401, "invalid_api_key", AuthenticationError),
        (404, "job_not_found", NotFoundError),
        (409, "idempotency_key_reused", ConflictError),
        (422, "invalid_settings", InvalidRequestError),
        (500, "internal_error", APIError),
    ],
)
def test_error_answers_are_typed_and_not_retried(
    server: LocalServer, flavour: str, status: int, code: str, cls: type[APIError]
) -> None:
    server.answer(error(status, code))
    with pytest.raises(cls) as raised:
        call(flavour, server.url, "cancel", JOB_ID)
    assert (raised.value.status, raised.value.code, raised.value.message) == (status, code, f"a {code} error")
    assert len(server.requests) == 1


def test_an_answer_not_from_the_api_has_no_code(server: LocalServer) -> None:
    server.answer(reply(502, b"<html>Bad Gateway</html>", {"Content-Type": "text/html"}))
    with pytest.raises(APIError) as raised:
        call("sync", server.url, "get", JOB_ID)
    assert (raised.value.status, raised.value.code, raised.value.message) == (502, None, "<html>Bad Gateway</html>")


def form_parts(body: bytes, content_type: str) -> list[tuple[str, str | None, bytes]]:
    """(name, file name, content) of each part of a multipart/form-data body, in order."""
    message = email.message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    return [
        (part.get_param("name", header="content-disposition"), part.get_filename(), part.get_payload(decode=True))
        for part in message.get_payload()
    ]


def test_the_submission_form(server: LocalServer, flavour: str, tmp_path: Path) -> None:
    picture = tmp_path / "finished.png"
    picture.write_bytes(b"\x89PNG finished")
    snapshot = Image.new("RGB", (8, 8), "white")
    server.answer(reply(202, job_json(status="queued")))
    call(
        flavour,
        server.url,
        "submit",
        picture,
        settings={"undo_steps": [400, 800], "fps": 8},
        metadata={"artwork_id": "art_42"},
        webhook_url="https://app.example.com/hooks",
        webhook_events=["job.succeeded", "job.failed"],
        keyframes=[b"first snapshot", snapshot],
        idempotency_key="order-42",
    )
    (request,) = server.requests
    assert request.headers["idempotency-key"] == "order-42"
    parts = form_parts(request.body, request.headers["content-type"])
    files = [part for part in parts if part[1] is not None]
    assert [(name, filename) for name, filename, _ in files] == [
        ("image", "finished.png"),
        ("keyframe", "keyframe_00"),
        ("keyframe", "keyframe_01.png"),
    ]
    assert files[0][2] == b"\x89PNG finished" and files[1][2] == b"first snapshot"
    assert Image.open(io.BytesIO(files[2][2])).size == (8, 8)
    contents = {name: content for name, filename, content in parts if filename is None}
    assert json.loads(contents["settings"]) == {"undo_steps": [400, 800], "fps": 8}
    assert json.loads(contents["metadata"]) == {"artwork_id": "art_42"}
    assert contents["webhook_url"] == b"https://app.example.com/hooks"
    assert contents["webhook_events"] == b"job.succeeded,job.failed"


def test_list_walks_every_page(server: LocalServer, flavour: str) -> None:
    ids = [f"job_{n:028x}" for n in (3, 2, 1)]
    server.answer(
        reply(200, {"jobs": [job_json(ids[0]), job_json(ids[1])], "next_cursor": ids[1]}),
        reply(200, {"jobs": [job_json(ids[2])], "next_cursor": None}),
    )
    assert [job.id for job in call(flavour, server.url, "list", page_size=2)] == ids
    assert [request.path for request in server.requests] == ["/v1/jobs?limit=2", f"/v1/jobs?limit=2&cursor={ids[1]}"]


def test_cancel_and_delete(server: LocalServer, flavour: str) -> None:
    server.answer(reply(200, job_json(JOB_ID, status="running", cancel_requested=True)), reply(204))
    assert call(flavour, server.url, "cancel", JOB_ID).cancel_requested
    assert call(flavour, server.url, "delete", JOB_ID) is None
    assert [(r.method, r.path) for r in server.requests] == [
        ("POST", f"/v1/jobs/{JOB_ID}/cancel"),
        ("DELETE", f"/v1/jobs/{JOB_ID}"),
    ]


def test_download_saves_the_video_the_outputs_and_the_keyframes(
    server: LocalServer, flavour: str, tmp_path: Path
) -> None:
    files = f"{server.url}/files"
    outputs = [
        {"kind": "video", "url": f"{files}/video", "media_type": "video/mp4", "bytes": 5},
        {"kind": "preview", "url": f"{files}/preview", "media_type": "image/webp", "bytes": 7},
        {"kind": "frames", "url": f"{files}/frames", "media_type": "application/zip", "bytes": 6},
    ]
    keyframes = [
        {"index": 0, "undo_step": 400, "url": f"{files}/k0"},
        {"index": 1, "undo_step": 800, "url": f"{files}/k1"},
    ]
    job = job_json(JOB_ID, outputs=outputs, keyframes=keyframes)
    contents = [b"video", b"preview", b"frames", b"png 0", b"png 1"]
    server.answer(
        reply(200, job), *[reply(200, content, {"Content-Type": "application/octet-stream"}) for content in contents]
    )

    paths = call(flavour, server.url, "download", JOB_ID, tmp_path / "out")

    names = ["video.mp4", "preview.webp", "frames.zip", "keyframe_00_undo400.png", "keyframe_01_undo800.png"]
    assert paths == [tmp_path / "out" / name for name in names]
    assert [path.read_bytes() for path in paths] == contents
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == sorted(names), "no partial files left"
    file_requests = server.requests[1:]
    assert [r.path for r in file_requests] == [
        "/files/video",
        "/files/preview",
        "/files/frames",
        "/files/k0",
        "/files/k1",
    ]
    assert not any("authorization" in r.headers for r in file_requests), "signed URLs get no API key"


def test_a_job_without_a_video_downloads_its_keyframes(server: LocalServer, flavour: str, tmp_path: Path) -> None:
    keyframes = [{"index": 0, "undo_step": 400, "url": f"{server.url}/files/k0"}]
    server.answer(
        reply(200, job_json(JOB_ID, video=None, keyframes=keyframes, settings={"stop_after": "keyframes"})),
        reply(200, b"png 0"),
    )
    assert call(flavour, server.url, "download", JOB_ID, tmp_path) == [tmp_path / "keyframe_00_undo400.png"]


def test_a_failed_download_is_typed_and_leaves_no_file(server: LocalServer, flavour: str, tmp_path: Path) -> None:
    keyframes = [{"index": 0, "undo_step": 400, "url": f"{server.url}/files/k0"}]
    server.answer(
        reply(200, job_json(JOB_ID, video=None, keyframes=keyframes)),
        reply(403, b"<Error><Code>AccessDenied</Code></Error>", {"Content-Type": "application/xml"}),
    )
    with pytest.raises(APIError) as raised:
        call(flavour, server.url, "download", JOB_ID, tmp_path)
    assert raised.value.status == 403 and raised.value.code is None
    assert list(tmp_path.iterdir()) == []
