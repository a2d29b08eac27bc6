"""End to end, as a drawing app uses the service: keyframes first (stop_after), then a video through the keyframes
it picked (supplied keyframes), with a preview and the frames as outputs, every file signed with C2PA Content
Credentials by the render worker (the stack is configured with a throwaway certificate chain)."""

import io
import json
import zipfile

import c2pa
import httpx
import pytest
from conftest import BUCKET, FAST_SETTINGS, Stack, png, wait_status, wait_until
from mp4 import read_mp4
from PIL import Image

pytestmark = pytest.mark.timeout(1800)

PHASE_TWO = {key: value for key, value in FAST_SETTINGS.items() if key != "undo_steps"}


def download(url: str) -> httpx.Response:
    response = httpx.get(url, timeout=60)
    assert response.status_code == 200, response.text
    return response


def active_manifest(data: bytes, media_type: str) -> dict:
    """The file's active C2PA manifest, once its signature and hashes validate."""
    with c2pa.Reader(media_type, io.BytesIO(data)) as reader:
        assert reader.get_validation_state() == "Valid"
        store = json.loads(reader.json())
    return store["manifests"][store["active_manifest"]]


def terminal_event(client: httpx.Client, job_id: str) -> dict:
    """The data of the last event of the job's stream (it ends there)."""
    last = None
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                last = json.loads(line.removeprefix("data: "))
    return last


def test_keyframes_first_then_a_video_through_the_picked_keyframes_with_outputs(stack: Stack, tmp_path) -> None:
    picture = png(seed=3)
    with stack.client() as client:
        # Phase 1: keyframes only.
        response = client.post(
            "/v1/jobs",
            files={"image": ("picture.png", picture, "image/png")},
            data={"settings": json.dumps({**FAST_SETTINGS, "stop_after": "keyframes"})},
        )
        assert response.status_code == 202, response.text
        first = wait_status(client, response.json()["id"], "succeeded", "failed")
        assert first["status"] == "succeeded", first["error"]
        assert first["video"] is None and first["outputs"] == [] and len(first["keyframes"]) == 2
        keyframes = [download(k["url"]).content for k in first["keyframes"]]  # undo steps 400, 800
        text = Image.open(io.BytesIO(keyframes[0])).text
        assert text["undo_step"] == "400" and text["prompt"] == first["prompt"] and "tiny preset" in text["models"]
        signed_keyframe = active_manifest(keyframes[0], "image/png")
        assert signed_keyframe["ingredients"][0]["relationship"] == "inputTo"

        # Phase 2: the picked keyframes, earliest state (most undone) first.
        files = [("image", ("picture.png", picture, "image/png"))]
        files += [("keyframe", (f"k{i}.png", data, "image/png")) for i, data in enumerate(reversed(keyframes))]
        settings = {**PHASE_TWO, "outputs": ["preview", "frames"]}
        response = client.post(
            "/v1/jobs",
            files=files,
            data={"settings": json.dumps(settings), "webhook_url": stack.receiver.url},
        )
        assert response.status_code == 202, response.text
        queued = response.json()
        assert queued["supplied_keyframes"] == 2 and queued["settings"]["undo_steps"] is None
        done = wait_status(client, queued["id"], "succeeded", "failed")
        assert done["status"] == "succeeded", done["error"]
        assert done["keyframes"] == [] and done["video"]["frames"] == 45  # 3 clips: 2 keyframes + the canvas

        outputs = {output["kind"]: output for output in done["outputs"]}
        assert list(outputs) == ["video", "preview", "frames"]
        files_by_kind = {}
        for kind, output in outputs.items():
            response = download(output["url"])
            assert response.headers["content-type"] == output["media_type"]
            assert len(response.content) == output["bytes"]
            files_by_kind[kind] = response.content
        (tmp_path / "video.mp4").write_bytes(files_by_kind["video"])
        assert read_mp4(tmp_path / "video.mp4")[1].shape[0] == 45
        with Image.open(io.BytesIO(files_by_kind["preview"])) as preview:
            assert preview.format == "WEBP" and preview.n_frames == 45 and max(preview.size) <= 512
        with zipfile.ZipFile(io.BytesIO(files_by_kind["frames"])) as frames:
            assert len(frames.namelist()) == 45
        for kind in ("video", "preview"):
            manifest = active_manifest(files_by_kind[kind], outputs[kind]["media_type"])
            (created,) = next(a for a in manifest["assertions"] if a["label"] == "c2pa.actions.v2")["data"]["actions"]
            assert created["digitalSourceType"].endswith("/trainedAlgorithmicMedia")

        # The terminal event and the webhook carry the outputs too.
        event = terminal_event(client, done["id"])
        assert [o["kind"] for o in event["job"]["outputs"]] == ["video", "preview", "frames"]
        succeeded = wait_until(
            lambda: [d for d in stack.receiver.for_job(done["id"]) if d.body["type"] == "job.succeeded"],
            60,
            "the job.succeeded webhook",
        )
        assert [o["kind"] for o in succeeded[0].body["data"]["outputs"]] == ["video", "preview", "frames"]

        # Deleting the job deletes every file it had: the inputs, the supplied keyframes and the outputs.
        prefix = f"e2e/jobs/{done['id']}/"
        names = {
            obj["Key"].removeprefix(prefix)
            for obj in stack.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
        }
        assert {"input", "input-keyframes/00", "input-keyframes/01"} <= names
        assert {name.rsplit("/", 1)[-1] for name in names} >= {"video.mp4", "preview.webp", "frames.zip"}
        assert client.delete(f"/v1/jobs/{done['id']}").status_code == 204
        assert stack.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["KeyCount"] == 0
        assert client.delete(f"/v1/jobs/{first['id']}").status_code == 204


def test_a_tampered_video_fails_validation(stack: Stack) -> None:
    with stack.client() as client:
        job_id = client.post(
            "/v1/jobs",
            files={"image": ("picture.png", png(seed=4), "image/png")},
            data={"settings": json.dumps(FAST_SETTINGS)},
        ).json()["id"]
        done = wait_status(client, job_id, "succeeded", "failed")
        assert done["status"] == "succeeded", done["error"]
        video = bytearray(download(done["video"]["url"]).content)
    video[-100] ^= 0xFF  # a byte of the frames, far from the manifest at the front
    with c2pa.Reader("video/mp4", io.BytesIO(bytes(video))) as reader:
        assert reader.get_validation_state() == "Invalid"
        failures = json.loads(reader.json())["validation_results"]["activeManifest"]["failure"]
    assert "assertion.bmffHash.mismatch" in [failure["code"] for failure in failures]
