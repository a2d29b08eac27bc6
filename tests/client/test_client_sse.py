"""The event stream: parsing, resuming with Last-Event-ID after a dropped or ended connection, and `wait`; against
a scripted local server (tests/client/local_api.py), with Client and AsyncClient."""

import asyncio

import pytest
from local_api import API_KEY, LocalServer, call, error, event_stream, job_json, reply
from paints_undo_client import (
    AsyncClient,
    JobCanceledError,
    JobFailedError,
    NotFoundError,
    ProgressEvent,
    StatusEvent,
    TerminalEvent,
)
from paints_undo_client._core import Message, SSEDecoder

JOB_ID = "job_0193a1b2c3d4e5f60718293a4b5c"
META = {"metadata": {"artwork_id": "art_42"}}
QUEUED = ("1-0", "job.queued", {"status": "queued", **META})
STARTED = ("2-0", "job.started", {"status": "running", "attempt": 1, **META})
STAGE = ("3-0", "stage.started", {"progress": 0.0, "eta_seconds": None, "stage": "tagging", **META})
PROMPT = ("4-0", "job.prompt", {"progress": 0.1, "eta_seconds": 9.0, "prompt": "1girl", **META})
KEYFRAME = (
    "5-0",
    "job.keyframe",
    {"progress": 0.5, "eta_seconds": 5.0, "index": 0, "undo_step": 400, "url": "u", **META},
)


def terminal(event_id: str, status: str, error: dict | None = None) -> tuple[str, str, dict]:
    job = job_json(JOB_ID, status=status, error=error, video=None if error else job_json()["video"])
    return event_id, f"job.{status}", {"status": status, "error": error, "job": job, **META}


def test_the_decoder_follows_the_event_stream_format() -> None:
    decoder = SSEDecoder()
    lines = [": keep-alive", "", "id: 7-0", "event: job.progress", 'data: {"a":', "data:1}", "", "data: x", ""]
    assert [decoder.feed(line) for line in lines] == [
        None,
        None,  # a comment only: no message
        None,
        None,
        None,
        None,
        Message("7-0", "job.progress", '{"a":\n1}'),
        None,
        Message("7-0", "message", "x"),  # the id stays; the type defaults
    ]
    cut = SSEDecoder("5-0")
    assert [cut.feed(line) for line in ("id: 6-0", "data: {")] == [None, None] and cut.last_id == "5-0"


def test_events_resume_after_a_dropped_and_an_ended_connection(server: LocalServer, flavour: str) -> None:
    server.answer(
        event_stream([QUEUED, STARTED], end="cut"),  # drops in the middle of the next message
        event_stream([], end="cut"),  # and again, before any message is complete
        event_stream([STAGE, PROMPT], end="close"),  # ends without the terminal event (a proxy's timeout)
        event_stream([KEYFRAME, terminal("6-0", "succeeded")]),
    )
    events = call(flavour, server.url, "events", JOB_ID)

    assert [(event.id, event.type) for event in events] == [
        ("1-0", "job.queued"),
        ("2-0", "job.started"),
        ("3-0", "stage.started"),
        ("4-0", "job.prompt"),
        ("5-0", "job.keyframe"),
        ("6-0", "job.succeeded"),
    ]
    assert [type(event) for event in events] == [StatusEvent] * 2 + [ProgressEvent] * 3 + [TerminalEvent]
    assert events[1].attempt == 1 and events[3].prompt == "1girl" and events[4].undo_step == 400
    assert events[-1].job.status == "succeeded" and events[-1].metadata == {"artwork_id": "art_42"}
    assert [r.path for r in server.requests] == [f"/v1/jobs/{JOB_ID}/events"] * 4
    assert [r.headers.get("last-event-id") for r in server.requests] == [None, "2-0", "2-0", "4-0"]
    assert {r.headers["authorization"] for r in server.requests} == {f"Bearer {API_KEY}"}


def test_a_stream_that_keeps_dropping_runs_out_of_retries(server: LocalServer) -> None:
    server.answer(*[event_stream([], end="cut")] * 3)
    with pytest.raises(Exception) as raised:
        call("sync", server.url, "events", JOB_ID, max_retries=2)
    assert type(raised.value).__name__ == "APIConnectionError" and len(server.requests) == 3


def test_a_resumed_stream_of_a_finished_job_ends_at_once(server: LocalServer, flavour: str) -> None:
    server.answer(reply(204))
    assert call(flavour, server.url, "events", JOB_ID, last_event_id="6-0") == []
    assert server.requests[0].headers["last-event-id"] == "6-0"


def test_wait_reports_progress_and_returns_the_finished_job(server: LocalServer, flavour: str) -> None:
    unknown = ("4-5", "job.thumbnail", {"url": "from a newer server", **META})
    server.answer(event_stream([QUEUED, STARTED, STAGE, PROMPT, unknown, KEYFRAME, terminal("6-0", "succeeded")]))
    progress: list[ProgressEvent] = []
    job = call(flavour, server.url, "wait", JOB_ID, on_progress=progress.append)
    assert job.id == JOB_ID and job.status == "succeeded" and job.video is not None
    assert [event.type for event in progress] == ["stage.started", "job.prompt", "job.keyframe"]


def test_an_async_wait_awaits_a_coroutine_callback(server: LocalServer) -> None:
    server.answer(event_stream([QUEUED, STAGE, terminal("6-0", "succeeded")]))
    seen: list[str] = []

    async def on_progress(event: ProgressEvent) -> None:
        await asyncio.sleep(0)
        seen.append(event.id)

    async def main() -> None:
        async with AsyncClient(server.url, API_KEY) as client:
            await client.wait(JOB_ID, on_progress=on_progress)

    asyncio.run(main())
    assert seen == ["3-0"]


def test_wait_raises_for_a_failed_job_with_its_code(server: LocalServer, flavour: str) -> None:
    failure = {"code": "render_failed", "message": "ffmpeg exited with 1"}
    server.answer(event_stream([QUEUED, STARTED, terminal("3-0", "failed", failure)]))
    with pytest.raises(JobFailedError) as raised:
        call(flavour, server.url, "wait", JOB_ID)
    assert raised.value.code == "render_failed" and raised.value.job.status == "failed"
    assert "ffmpeg exited with 1" in str(raised.value)


def test_wait_raises_for_a_canceled_job(server: LocalServer, flavour: str) -> None:
    server.answer(event_stream([QUEUED, terminal("2-0", "canceled")]))
    with pytest.raises(JobCanceledError) as raised:
        call(flavour, server.url, "wait", JOB_ID)
    assert raised.value.job.id == JOB_ID


def test_wait_for_a_job_deleted_before_its_end_was_read_is_not_found(server: LocalServer, flavour: str) -> None:
    deleted = ("3-0", "job.succeeded", {"status": "succeeded", "error": None, "job": None, **META})
    server.answer(event_stream([QUEUED, STARTED, deleted]), error(404, "job_not_found"))
    with pytest.raises(NotFoundError) as raised:
        call(flavour, server.url, "wait", JOB_ID)
    assert raised.value.code == "job_not_found"
    assert [request.path for request in server.requests][-1] == f"/v1/jobs/{JOB_ID}"
