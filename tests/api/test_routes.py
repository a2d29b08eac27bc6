"""Every error code the routes give, once each, through FastAPI's TestClient with the services overridden:
a private Redis, folder storage, and a queue that records what would be sent to the workers."""

import base64
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from services import free_port, start_redis_server

from api.config import ApiSettings, key_owner
from api.deps import Services, get_services
from api.main import create_app, create_services
from jobs.errors import ErrorCode
from jobs.service import JobService
from jobs.storage import LocalStorage, StorageError

ALICE, BOB = "alice-key-0123456789", "bob-key-0123456789ab"
SECRET = "whsec_" + base64.b64encode(b"a-webhook-secret-of-32-bytes!!!!").decode()


@dataclass
class RecordingQueue:
    rendered: list[str] = field(default_factory=list)

    def render(self, job_id: str) -> None:
        self.rendered.append(job_id)

    def deliver_webhook(self, *args: object) -> None:
        pass


class BrokenStorage(LocalStorage):
    def put(self, key: str, data, content_type: str) -> None:
        raise StorageError("connection refused")

    def check(self) -> None:
        raise StorageError("connection refused")


def png(width: int = 64, height: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def redis_url() -> Iterator[str]:
    with start_redis_server() as url:
        yield url


def settings(redis_url: str, folder: Path, **overrides: object) -> ApiSettings:
    values = {
        "api_keys": f"{ALICE},{BOB}",
        "redis_url": redis_url,
        "storage_url": f"file://{folder}",
        "max_upload_bytes": 50_000,
        "max_request_bytes": 120_000,
        "max_pixels": 1_000_000,
        "max_active_jobs": 2,
        "webhook_secret": SECRET,
        **overrides,
    }
    return ApiSettings(**values)


def client_for(services: Services, queue: RecordingQueue | None = None) -> TestClient:
    jobs = services.jobs
    fake = JobService(jobs.settings, jobs.store, jobs.storage, queue or RecordingQueue(), jobs.notifier)
    app = create_app(services.settings.model_copy(update={"api_keys": (ALICE, BOB)}))
    app.dependency_overrides[get_services] = lambda: replace(services, jobs=fake)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def services(redis_url: str, tmp_path: Path) -> Services:
    return create_services(settings(redis_url, tmp_path))


@pytest.fixture
def client(services: Services) -> TestClient:
    return client_for(services)


def submit(client: TestClient, key: str = ALICE, image: bytes | None = None, headers: dict | None = None, **form):
    files = {"image": ("picture.png", png() if image is None else image, "image/png")}
    return client.post(
        "/v1/jobs", files=files, data=form, headers={"Authorization": f"Bearer {key}", **(headers or {})}
    )


def error(response, status: int, code: ErrorCode) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    return body["error"]["message"]


def test_a_submission_is_queued_once_and_answers_202(services: Services) -> None:
    queue = RecordingQueue()
    client = client_for(services, queue)
    response = submit(client, settings='{"keyframe_steps": 4}')
    assert response.status_code == 202
    job = response.json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert (job["status"], job["queue_position"], job["settings"]["keyframe_steps"]) == ("queued", 1, 4)
    assert queue.rendered == [job["id"]]


def submit_with_keyframes(client: TestClient, keyframes: list[bytes], **form):
    files = [("image", ("picture.png", png(), "image/png"))]
    files += [("keyframe", (f"snapshot{index}.png", data, "image/png")) for index, data in enumerate(keyframes)]
    return client.post("/v1/jobs", files=files, data=form, headers={"Authorization": f"Bearer {ALICE}"})


def test_supplied_keyframes_are_stored_in_order_and_the_job_has_no_undo_steps(services: Services) -> None:
    queue = RecordingQueue()
    client = client_for(services, queue)
    keyframes = [png(32, 40), png(48, 48), png(20, 30)]
    response = submit_with_keyframes(client, keyframes, settings='{"outputs": ["preview", "frames"]}')
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["supplied_keyframes"] == 3 and job["keyframes"] == [] and job["outputs"] == []
    assert job["settings"]["undo_steps"] is None and job["settings"]["outputs"] == ["preview", "frames"]
    assert queue.rendered == [job["id"]]
    stored = services.jobs.store.get(job["id"])
    assert [services.jobs.storage.get(key) for key in stored.supplied_keyframes] == keyframes
    # Without keyframes, the job records the undo steps the keyframe model will use.
    assert submit(client).json()["settings"]["undo_steps"] == [400, 600, 800, 900, 950, 999]
    two_phase = submit(client, key=BOB, settings='{"stop_after": "keyframes"}').json()  # ALICE is at her limit
    assert two_phase["settings"]["stop_after"] == "keyframes" and two_phase["supplied_keyframes"] == 0


@pytest.mark.parametrize(
    ("keyframes", "settings", "status", "code", "named"),
    [
        ([png()], '{"undo_steps": [400]}', 422, ErrorCode.INVALID_SETTINGS, "undo_steps: must be absent"),
        ([png()], '{"stop_after": "keyframes"}', 422, ErrorCode.INVALID_SETTINGS, "nothing to do"),
        ([png()] * 21, None, 422, ErrorCode.INVALID_REQUEST, "keyframe: 21 parts; at most 20"),
        ([png(), b"GIF89a" + b"\0" * 100], None, 415, ErrorCode.UNSUPPORTED_IMAGE_TYPE, "keyframe 2 must be"),
        ([png(1001, 1000)], None, 422, ErrorCode.IMAGE_TOO_LARGE, "keyframe 1 is 1001x1000"),
        ([b"x" * 60_000], None, 413, ErrorCode.UPLOAD_TOO_LARGE, "keyframe 1 is larger than the limit of 50000 bytes"),
        ([b"x" * 40_000] * 3, None, 413, ErrorCode.UPLOAD_TOO_LARGE, "the picture and keyframes are"),
    ],
)
def test_bad_supplied_keyframes_are_refused_and_nothing_is_stored(
    services: Services, tmp_path: Path, keyframes, settings, status, code, named
) -> None:
    queue = RecordingQueue()
    client = client_for(services, queue)
    form = {"settings": settings} if settings else {}
    assert named in error(submit_with_keyframes(client, keyframes, **form), status, code)
    assert queue.rendered == [] and not (tmp_path / "jobs").exists()


def test_authentication_errors(client: TestClient) -> None:
    assert error(client.get("/v1/jobs"), 401, ErrorCode.MISSING_API_KEY)
    response = client.get("/v1/jobs", headers={"Authorization": "Bearer not-a-key-0123456789"})
    error(response, 401, ErrorCode.INVALID_API_KEY)
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_another_keys_job_is_not_found(client: TestClient) -> None:
    job_id = submit(client).json()["id"]
    for method, path in [("GET", ""), ("POST", "/cancel"), ("DELETE", ""), ("GET", "/events")]:
        response = client.request(method, f"/v1/jobs/{job_id}{path}", headers={"Authorization": f"Bearer {BOB}"})
        error(response, 404, ErrorCode.JOB_NOT_FOUND)


@pytest.mark.parametrize(
    ("image", "status", "code"),
    [
        (b"x" * 60_000, 413, ErrorCode.UPLOAD_TOO_LARGE),
        (b"GIF89a" + b"\0" * 100, 415, ErrorCode.UNSUPPORTED_IMAGE_TYPE),
        (png(1001, 1000), 422, ErrorCode.IMAGE_TOO_LARGE),
        (png()[:60], 422, ErrorCode.INVALID_IMAGE),
    ],
)
def test_image_errors(client: TestClient, image: bytes, status: int, code: ErrorCode) -> None:
    error(submit(client, image=image), status, code)


def test_a_body_over_the_limit_is_refused_from_its_content_length(client: TestClient) -> None:
    headers = {"Authorization": f"Bearer {ALICE}", "Content-Type": "multipart/form-data; boundary=x"}
    response = client.post("/v1/jobs", content=b"x" * 400_000, headers=headers)
    error(response, 413, ErrorCode.UPLOAD_TOO_LARGE)


@pytest.mark.parametrize(
    ("form", "code", "named"),
    [
        ({"settings": '{"keyframe_steps": 0}'}, ErrorCode.INVALID_SETTINGS, "keyframe_steps"),
        ({"settings": '{"colour": 1}'}, ErrorCode.INVALID_SETTINGS, "colour"),
        ({"webhook_url": "ftp://example.com/hook"}, ErrorCode.INVALID_WEBHOOK_URL, "http"),
        ({"webhook_url": "http://127.0.0.1:9/hook"}, ErrorCode.WEBHOOK_URL_FORBIDDEN, "127.0.0.1"),
        (
            {"webhook_url": "http://93.184.215.14/h", "webhook_events": "job.done"},
            ErrorCode.INVALID_WEBHOOK_EVENTS,
            "job.done",
        ),
    ],
)
def test_form_errors_name_the_problem(client: TestClient, form: dict, code: ErrorCode, named: str) -> None:
    assert named in error(submit(client, **form), 422, code)


def test_webhooks_need_a_configured_secret(redis_url: str, tmp_path: Path) -> None:
    client = client_for(create_services(settings(redis_url, tmp_path, webhook_secret=None)))
    error(submit(client, webhook_url="http://93.184.215.14/hook"), 422, ErrorCode.WEBHOOKS_NOT_CONFIGURED)


def test_a_missing_image_is_an_invalid_request(client: TestClient) -> None:
    response = client.post("/v1/jobs", data={"settings": "{}"}, headers={"Authorization": f"Bearer {ALICE}"})
    assert "image" in error(response, 422, ErrorCode.INVALID_REQUEST)


def test_idempotency_errors(client: TestClient) -> None:
    error(submit(client, headers={"Idempotency-Key": "k" * 256}), 422, ErrorCode.INVALID_IDEMPOTENCY_KEY)
    first = submit(client, headers={"Idempotency-Key": "once"})
    again = submit(client, headers={"Idempotency-Key": "once"})
    assert (first.status_code, again.json()["id"]) == (202, first.json()["id"])
    error(
        submit(client, headers={"Idempotency-Key": "once"}, settings='{"fps": 8}'),
        409,
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
    )


def test_the_active_jobs_limit_answers_429_with_retry_after(client: TestClient, tmp_path: Path) -> None:
    assert [submit(client, BOB).status_code for _ in range(2)] == [202, 202]
    response = submit(client, BOB)
    error(response, 429, ErrorCode.TOO_MANY_ACTIVE_JOBS)
    assert int(response.headers["Retry-After"]) > 0
    assert len(list(tmp_path.glob("jobs/*/input"))) == 2  # the refused input was not kept


def test_redis_down_is_503_service_unavailable(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    client = client_for(create_services(settings(dead, tmp_path)))
    response = client.get("/v1/jobs", headers={"Authorization": f"Bearer {ALICE}"})
    error(response, 503, ErrorCode.SERVICE_UNAVAILABLE)
    assert response.headers["Retry-After"]
    error(client.get("/readyz"), 503, ErrorCode.NOT_READY)


def test_storage_down_is_503_storage_unavailable(services: Services, tmp_path: Path) -> None:
    broken = BrokenStorage(tmp_path, b"s" * 32, "http://127.0.0.1:8000")
    jobs = services.jobs
    client = client_for(
        replace(services, jobs=JobService(jobs.settings, jobs.store, broken, jobs.queue, jobs.notifier))
    )
    error(submit(client), 503, ErrorCode.STORAGE_UNAVAILABLE)
    assert "storage" in error(client.get("/readyz"), 503, ErrorCode.NOT_READY)


def test_file_url_errors(client: TestClient, services: Services) -> None:
    job = submit(client).json()
    storage = services.jobs.storage
    good = storage.url(f"jobs/{job['id']}/input", 60).removeprefix("http://127.0.0.1:8000")
    assert client.get(good).status_code == 200
    expired = f"/v1/files/jobs/{job['id']}/input?expires={int(time.time()) - 1}&signature=00"
    error(client.get(expired), 403, ErrorCode.INVALID_OR_EXPIRED_URL)
    missing = storage.url(f"jobs/{job['id']}/video.mp4", 60).removeprefix("http://127.0.0.1:8000")
    error(client.get(missing), 404, ErrorCode.FILE_NOT_FOUND)


def test_framework_errors_have_codes_too(client: TestClient) -> None:
    error(client.get("/v2/nothing"), 404, ErrorCode.NOT_FOUND)
    error(client.put("/v1/jobs", headers={"Authorization": f"Bearer {ALICE}"}), 405, ErrorCode.METHOD_NOT_ALLOWED)
    response = client.get("/v1/jobs?limit=0", headers={"Authorization": f"Bearer {ALICE}"})
    assert "limit" in error(response, 422, ErrorCode.INVALID_REQUEST)


def test_an_unexpected_error_is_a_500_with_a_code(services: Services) -> None:
    class Exploding(JobService):
        def list(self, owner: str, limit: int, cursor: str | None):
            raise ZeroDivisionError("a bug")

    jobs = services.jobs
    client = client_for(services)
    exploding = Exploding(jobs.settings, jobs.store, jobs.storage, jobs.queue, jobs.notifier)
    client.app.dependency_overrides[get_services] = lambda: replace(services, jobs=exploding)
    response = client.get("/v1/jobs", headers={"Authorization": f"Bearer {ALICE}"})
    assert "a bug" not in error(response, 500, ErrorCode.INTERNAL_ERROR)


def test_a_broker_failure_undoes_the_submission(services: Services, tmp_path: Path) -> None:
    """The record was made, then the render message could not be sent: neither record nor file stays."""

    class BrokerDown(RecordingQueue):
        def render(self, job_id: str) -> None:
            raise OSError("Error 111 connecting to the broker")

    response = submit(client_for(services, BrokerDown()))
    error(response, 503, ErrorCode.SERVICE_UNAVAILABLE)
    assert response.headers["Retry-After"]
    assert not list(tmp_path.glob("jobs/*/input"))
    assert services.jobs.store.list_for_owner(key_owner(ALICE), 10) == []


def test_cancel_and_delete(client: TestClient, services: Services, tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {ALICE}"}
    job_id = submit(client).json()["id"]
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=auth).json()["status"] == "canceled"
    assert client.delete(f"/v1/jobs/{job_id}", headers=auth).status_code == 204
    assert not list(tmp_path.glob(f"jobs/{job_id}/*"))
    error(client.get(f"/v1/jobs/{job_id}", headers=auth), 404, ErrorCode.JOB_NOT_FOUND)
    assert services.jobs.store.get(job_id) is None
