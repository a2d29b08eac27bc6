"""End to end: HTTP clients against uvicorn, a real Celery render worker on the tiny checkpoints, Redis, S3 over
HTTP (moto's server) and a webhook receiver that verifies signatures. Nothing of ours is mocked."""

import io
import json
import os
import signal
import subprocess

import httpx
import pytest
from conftest import (
    BUCKET,
    FAST_SETTINGS,
    JOB_DEADLINE,
    MAX_ACTIVE_JOBS,
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    SLOW_SETTINGS,
    Stack,
    job,
    png,
    submit,
    wait_status,
    wait_until,
)
from mp4 import read_mp4
from PIL import Image

# Waits are long on a busy machine (JOB_DEADLINE); the guard still ends a hung test with a message.
pytestmark = pytest.mark.timeout(1800)


def sse_events(client: httpx.Client, job_id: str, last_event_id: str | None = None) -> list[dict]:
    """All events of the stream until the server ends it, as {"id", "event", "data"}."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events, current = [], {}
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=JOB_DEADLINE) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if current:
                    events.append(current)
                current = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                current[name] = json.loads(value) if name == "data" else value
    return events


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


def test_job_from_post_to_playable_mp4_with_signed_webhooks(stack: Stack, tmp_path) -> None:
    with stack.client() as client:
        response = submit(client, FAST_SETTINGS, webhook_url=stack.receiver.url)
        assert response.status_code == 202, response.text
        body = response.json()
        assert response.headers["location"] == f"/v1/jobs/{body['id']}"
        assert body["status"] == "queued" and body["settings"]["undo_steps"] == [400, 800]

        done = wait_status(client, body["id"], "succeeded", "failed")
        assert done["status"] == "succeeded", done["error"]
        assert done["progress"] == 1.0 and done["prompt"]
        assert [(k["index"], k["undo_step"]) for k in done["keyframes"]] == [(0, 400), (1, 800)]
        video = done["video"]
        assert video["frames"] == 15 * 3 and video["fps"] == FAST_SETTINGS.get("fps", 4)

        # The URLs are presigned S3 URLs: fetched with no API key, straight from the store.
        mp4 = httpx.get(video["url"])
        assert mp4.status_code == 200
        (tmp_path / "video.mp4").write_bytes(mp4.content)
        meta, frames = read_mp4(tmp_path / "video.mp4")
        assert meta["codec"].startswith("h264") and frames.shape == (
            video["frames"],
            video["height"],
            video["width"],
            3,
        )
        keyframe = Image.open(io.BytesIO(httpx.get(done["keyframes"][0]["url"]).content))
        assert keyframe.format == "PNG" and keyframe.size == (256, 256)

    deliveries = wait_until(
        lambda: (d := stack.receiver.for_job(body["id"])) and d[-1].body["type"] == "job.succeeded" and d,
        30,
        "the job.succeeded webhook",
    )
    assert [d.body["type"] for d in deliveries] == ["job.started", "job.keyframe", "job.keyframe", "job.succeeded"]
    assert all(d.status == 200 for d in deliveries), "every signature verified"
    assert len({d.headers["webhook-id"] for d in deliveries}) == 4
    assert deliveries[-1].body["data"]["video"]["frames"] == video["frames"]


def test_keyframes_appear_while_the_job_runs_and_sse_streams_every_event(stack: Stack) -> None:
    with stack.client() as client:
        job_id = submit(client, {**FAST_SETTINGS, "video_steps": 25}).json()["id"]
        running_with_keyframes = wait_until(
            lambda: (body := job(client, job_id))["status"] == "running" and len(body["keyframes"]) == 2 and body,
            90,
            "keyframes of a running job",
        )
        assert running_with_keyframes["video"] is None
        assert running_with_keyframes["stage"] in ("keyframes", "interpolation")
        assert 0 < running_with_keyframes["progress"] < 1
        assert httpx.get(running_with_keyframes["keyframes"][1]["url"]).status_code == 200

        events = sse_events(client, job_id)  # ends by itself after the terminal event
        types = [event["event"] for event in events]
        assert types[:2] == ["job.queued", "job.started"] and types[-1] == "job.succeeded"
        assert types.count("job.keyframe") == 2
        assert [e["data"]["stage"] for e in events if e["event"] == "stage.started"] == [
            "tagging",
            "keyframes",
            "interpolation",
            "encoding",
        ]
        progress = [e["data"]["progress"] for e in events if "progress" in e["data"]]
        assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0)
        assert types.count("job.progress") >= 2 + 25  # sampler steps of both stages, then encoded frames

        # Resuming after an event gives exactly the rest.
        middle = len(events) // 2
        rest = sse_events(client, job_id, last_event_id=events[middle]["id"])
        assert [e["id"] for e in rest] == [e["id"] for e in events[middle + 1 :]]


def test_cancel_while_queued_and_while_running_then_the_worker_takes_the_next_job(stack: Stack) -> None:
    with stack.client("bob") as client:
        running_id = submit(client, SLOW_SETTINGS).json()["id"]
        wait_until(lambda: job(client, running_id)["progress"] > 0, what="the slow job to make progress")
        queued = submit(client, FAST_SETTINGS).json()
        assert queued["status"] == "queued" and queued["queue_position"] == 1

        canceled = client.post(f"/v1/jobs/{queued['id']}/cancel")
        assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
        assert client.post(f"/v1/jobs/{queued['id']}/cancel").json()["status"] == "canceled"  # idempotent

        assert client.post(f"/v1/jobs/{running_id}/cancel").json()["status"] == "running"  # stops at the next step
        stopped = wait_status(client, running_id, "canceled", "succeeded", "failed", timeout=30)
        assert stopped["status"] == "canceled" and stopped["video"] is None

        after = submit(client, FAST_SETTINGS).json()["id"]
        assert wait_status(client, after, "succeeded", "failed")["status"] == "succeeded"

        never_started = job(client, queued["id"])
        assert never_started["started_at"] is None
        assert [e["event"] for e in sse_events(client, queued["id"])] == ["job.queued", "job.canceled"]
        running_events = [e["event"] for e in sse_events(client, running_id)]
        assert running_events[-1] == "job.canceled" and "stage.finished" not in running_events[-3:]


def test_idempotent_resubmission(stack: Stack) -> None:
    with stack.client("carol") as client:
        headers = {"Idempotency-Key": "order-42"}
        image = png(seed=4)
        first = client.post(
            "/v1/jobs", files={"image": ("a.png", image)}, data={"settings": json.dumps(FAST_SETTINGS)}, headers=headers
        )
        again = client.post(
            "/v1/jobs", files={"image": ("b.png", image)}, data={"settings": json.dumps(FAST_SETTINGS)}, headers=headers
        )
        assert first.status_code == again.status_code == 202
        assert first.json()["id"] == again.json()["id"]
        other = client.post("/v1/jobs", files={"image": ("a.png", png(seed=5))}, headers=headers)
        assert other.status_code == 409 and error_code(other) == "idempotency_key_reused"
        ids = [j["id"] for j in client.get("/v1/jobs", params={"limit": 100}).json()["jobs"]]
        assert ids.count(first.json()["id"]) == 1
        wait_status(client, first.json()["id"], "succeeded", "failed")
    with stack.client("alice") as client:  # the same key from another caller is another job
        response = client.post("/v1/jobs", files={"image": ("a.png", image)}, headers=headers)
        assert response.status_code == 202 and response.json()["id"] != first.json()["id"]
        client.delete(f"/v1/jobs/{response.json()['id']}")


def test_a_key_sees_only_its_own_jobs(stack: Stack) -> None:
    with stack.client("alice") as alice, stack.client("bob") as bob:
        job_id = submit(alice, FAST_SETTINGS).json()["id"]
        for method, path in [
            ("GET", f"/v1/jobs/{job_id}"),
            ("GET", f"/v1/jobs/{job_id}/events"),
            ("POST", f"/v1/jobs/{job_id}/cancel"),
            ("DELETE", f"/v1/jobs/{job_id}"),
        ]:
            response = bob.request(method, path)
            assert response.status_code == 404 and error_code(response) == "job_not_found", (method, path)
        assert job_id not in [j["id"] for j in bob.get("/v1/jobs", params={"limit": 100}).json()["jobs"]]
        assert job_id in [j["id"] for j in alice.get("/v1/jobs").json()["jobs"]]
        assert wait_status(alice, job_id, "succeeded", "failed")["status"] == "succeeded"  # untouched by bob
    with stack.client(None) as anonymous:
        response = anonymous.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 401 and error_code(response) == "missing_api_key"
        response = anonymous.get("/v1/jobs", headers={"Authorization": "Bearer not-a-key-of-ours-at-all"})
        assert response.status_code == 401 and error_code(response) == "invalid_api_key"


def test_every_limit_has_its_own_error(stack: Stack) -> None:
    with stack.client("carol") as client:
        too_big = client.post(
            "/v1/jobs", files={"image": ("a.png", b"\x89PNG" + os.urandom(MAX_UPLOAD_BYTES + 300_000))}
        )
        assert too_big.status_code == 413 and error_code(too_big) == "upload_too_large"

        side = int(MAX_PIXELS**0.5) + 10
        flat = io.BytesIO()
        Image.new("RGB", (side, side), "white").save(flat, format="PNG")  # small file, too many pixels
        bomb = submit(client, image=flat.getvalue())
        assert bomb.status_code == 422 and error_code(bomb) == "image_too_large"

        gif = io.BytesIO()
        Image.new("RGB", (64, 64)).save(gif, format="GIF")
        response = client.post("/v1/jobs", files={"image": ("picture.png", gif.getvalue(), "image/png")})
        assert response.status_code == 415 and error_code(response) == "unsupported_image_type"

        response = submit(client, {"undo_steps": [400, 400]})
        assert response.status_code == 422 and error_code(response) == "invalid_settings"
        assert "undo_steps" in response.json()["error"]["message"]

        for url, code in [
            ("http://10.1.2.3/hook", "webhook_url_forbidden"),
            ("http://169.254.169.254/latest/meta-data", "webhook_url_forbidden"),
            ("ftp://example.com/hook", "invalid_webhook_url"),
        ]:
            response = submit(client, FAST_SETTINGS, webhook_url=url)
            assert response.status_code == 422 and error_code(response) == code, url
        response = submit(client, FAST_SETTINGS, webhook_url=stack.receiver.url, webhook_events="job.exploded")
        assert response.status_code == 422 and error_code(response) == "invalid_webhook_events"

        accepted = [submit(client, SLOW_SETTINGS) for _ in range(MAX_ACTIVE_JOBS)]
        assert [r.status_code for r in accepted] == [202] * MAX_ACTIVE_JOBS
        refused = submit(client, SLOW_SETTINGS)
        assert refused.status_code == 429 and error_code(refused) == "too_many_active_jobs"
        assert int(refused.headers["retry-after"]) > 0
        for response in accepted:
            assert client.delete(f"/v1/jobs/{response.json()['id']}").status_code == 204
        assert submit(client, FAST_SETTINGS).status_code == 202  # slots freed


def test_webhook_is_retried_after_the_receiver_fails(stack: Stack) -> None:
    with stack.client() as client:
        job_id = submit(client, FAST_SETTINGS, webhook_url=stack.receiver.url, webhook_events="job.succeeded").json()[
            "id"
        ]
        stack.receiver.failures[job_id] = 2
        wait_status(client, job_id, "succeeded", "failed")
        deliveries = wait_until(
            lambda: (d := stack.receiver.for_job(job_id)) and d[-1].status == 200 and d, 60, "a delivered retry"
        )
        assert [d.status for d in deliveries] == [500, 500, 200]
        assert len({d.headers["webhook-id"] for d in deliveries}) == 1, "one message, retried under one id"
        assert {d.body["type"] for d in deliveries} == {"job.succeeded"}
        attempts = wait_until(lambda: len(a := job(client, job_id)["webhook_attempts"]) == 3 and a, what="attempts")
        assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, 500), (2, 500), (3, 200)]


def test_a_worker_killed_mid_job_does_not_lose_the_job(stack: Stack) -> None:
    assert stack.render_worker is not None
    with stack.client() as client:
        job_id = submit(client, SLOW_SETTINGS).json()["id"]
        wait_until(lambda: job(client, job_id)["progress"] > 0.05, what="the job to be well under way")
        # The pool process running the job dies (the OOM killer's usual victim); the main process survives.
        children = subprocess.run(["pgrep", "-P", str(stack.render_worker.pid)], capture_output=True, text=True)
        (child,) = [int(pid) for pid in children.stdout.split()]
        os.kill(child, signal.SIGKILL)
        done = wait_status(client, job_id, "succeeded", "failed")
        assert done["status"] == "succeeded", done["error"]
        events = [e["event"] for e in sse_events(client, job_id)]
        assert events.count("job.started") == 2


def test_delete_removes_the_record_and_the_files(stack: Stack) -> None:
    with stack.client() as client:
        job_id = submit(client, FAST_SETTINGS).json()["id"]
        wait_status(client, job_id, "succeeded", "failed")
        listed = stack.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"e2e/jobs/{job_id}/")
        assert {obj["Key"].rsplit("/", 1)[-1] for obj in listed["Contents"]} == {
            "input",
            "00.png",
            "01.png",
            "video.mp4",
        }
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
        assert client.get(f"/v1/jobs/{job_id}").status_code == 404
        assert stack.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"e2e/jobs/{job_id}/")["KeyCount"] == 0


def test_health_readiness_metrics_and_openapi(stack: Stack) -> None:
    with stack.client(None) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz").json()
        assert ready["redis"] == ready["storage"] == "ok" and ready["workers"][0]["state"] in ("ready", "busy")
        metrics = client.get("/metrics").text
        for name in (
            "paints_undo_queue_depth",
            'paints_undo_jobs{status="succeeded"}',
            "paints_undo_stage_duration_seconds_bucket",
        ):
            assert name in metrics
        spec = client.get("/openapi.json").json()
        assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/cancel", "/v1/jobs/{job_id}/events"} <= set(
            spec["paths"]
        )
        assert "ErrorResponse" in spec["components"]["schemas"]
        missing = client.get("/v1/nothing-here")
        assert missing.status_code == 404 and error_code(missing) == "not_found"
