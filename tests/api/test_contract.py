# ruff: noqa: F811  (the fixtures of test_routes, imported)
"""The API contract a client is written against: the OpenAPI document, offline docs, strict forms, metadata,
cheap refusals, cancel_requested, and event streams that end."""

import asyncio
import dataclasses
import json
import re
import struct
import time
import zlib

import pytest
from fastapi.testclient import TestClient
from openapi_spec_validator import validate
from test_routes import ALICE, SECRET, RecordingQueue, client, client_for, error, png, redis_url, services, submit  # noqa: F401  (fixtures)

from api.deps import Services
from api.routes import events as events_route
from jobs.errors import ErrorCode
from jobs.events import EventReader
from jobs.notify import WebhookNotifier
from jobs.records import EventType, JobStatus
from jobs.webhooks import WEBHOOK_EVENTS
from model_core.settings import RenderSettings

AUTH = {"Authorization": f"Bearer {ALICE}"}
LEASE = 60.0


@pytest.fixture
def document(client: TestClient) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


# --- the OpenAPI document ------------------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1(document: dict) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_operation_ids_are_the_route_names(document: dict) -> None:
    ids = {op["operationId"] for path in document["paths"].values() for op in path.values()}
    assert {"create_job", "list_jobs", "get_job", "cancel_job", "delete_job", "job_events", "get_file"} <= ids


def test_the_settings_part_is_the_render_settings_object(document: dict) -> None:
    body = document["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["encoding"]["settings"]["contentType"] == "application/json"
    assert body["schema"]["required"] == ["image"] and body["schema"]["additionalProperties"] is False
    settings = resolve(document, body["schema"]["properties"]["settings"])
    assert set(settings["properties"]) == set(RenderSettings.model_fields)
    for name, field in settings["properties"].items():
        assert "default" in field and field.get("description"), name
    assert settings["properties"]["keyframe_steps"] | {} == {
        **settings["properties"]["keyframe_steps"],
        "type": "integer",
        "minimum": 1,
        "maximum": 100,
        "default": 50,
    }
    assert {"type": "string", "const": "auto"} in settings["properties"]["width"]["anyOf"]
    assert settings["properties"]["width"]["default"] == "auto"
    metadata = body["schema"]["properties"]["metadata"]
    assert metadata["maxProperties"] == 16 and metadata["additionalProperties"]["maxLength"] == 256


def test_the_jobs_settings_is_the_render_settings_object(document: dict) -> None:
    job = document["components"]["schemas"]["JobOut"]
    assert resolve(document, job["properties"]["settings"])["title"] == "RenderSettings"
    assert {"metadata", "cancel_requested"} <= set(job["required"])


def test_error_code_is_an_enumeration_of_every_code(document: dict) -> None:
    body = resolve(document, document["components"]["schemas"]["ErrorBody"]["properties"]["code"])
    assert set(body["enum"]) == {code.value for code in ErrorCode}


def test_each_route_lists_only_its_own_error_statuses_with_their_codes(document: dict) -> None:
    paths = document["paths"]
    statuses = {
        ("post", "/v1/jobs"): {"202", "401", "409", "413", "415", "422", "429", "503"},
        ("get", "/v1/jobs"): {"200", "401", "422", "503"},
        ("get", "/v1/jobs/{job_id}"): {"200", "401", "404", "503"},
        ("post", "/v1/jobs/{job_id}/cancel"): {"200", "401", "404", "503"},
        ("delete", "/v1/jobs/{job_id}"): {"204", "401", "404", "503"},
        ("get", "/v1/jobs/{job_id}/events"): {"200", "204", "401", "404", "422", "503"},
        ("get", "/v1/files/{key}"): {"200", "403", "404", "422"},
        ("get", "/readyz"): {"200", "503"},
    }
    for (method, path), expected in statuses.items():
        responses = paths[path][method]["responses"]
        assert set(responses) == expected, (method, path)
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                content = response["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}, (path, status)
                assert set(content["examples"]) == set(response["x-error-codes"]) != set()
                for code, example in content["examples"].items():
                    assert example["value"]["error"]["code"] == code
                    assert code in response["description"]
    assert "HTTPValidationError" not in json.dumps(document)
    assert set(paths["/v1/jobs"]["post"]["responses"]["422"]["x-error-codes"]) >= {
        "invalid_settings",
        "invalid_metadata",
        "invalid_request",
        "image_too_large",
    }


def test_every_json_response_schema_has_an_example(document: dict) -> None:
    for path in document["paths"].values():
        for operation in path.values():
            for response in operation["responses"].values():
                content = response.get("content", {}).get("application/json")
                if content is not None:
                    assert content.get("examples") or resolve(document, content["schema"]).get("examples")


def test_the_event_stream_documents_each_event_types_data(document: dict) -> None:
    stream = document["paths"]["/v1/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]
    messages = [resolve(document, ref) for ref in stream["schema"]["oneOf"]]
    assert [message["properties"]["event"]["const"] for message in messages] == [str(type) for type in EventType]
    succeeded = resolve(document, messages[list(EventType).index(EventType.SUCCEEDED)]["properties"]["data"])
    job, deleted = succeeded["properties"]["job"]["anyOf"]  # null: the job was deleted before the event was read
    assert resolve(document, job)["title"] == "JobOut" and deleted == {"type": "null"}
    for message in messages:
        assert "metadata" in resolve(document, message["properties"]["data"])["properties"]


def test_webhook_bodies_are_in_the_webhooks_section(document: dict) -> None:
    assert set(document["webhooks"]) == set(WEBHOOK_EVENTS)
    for hook in document["webhooks"].values():
        body = resolve(document, hook["post"]["requestBody"]["content"]["application/json"]["schema"])
        assert resolve(document, body["properties"]["data"])["title"] == "JobOut"
        assert body["properties"]["type"]["enum"] == list(WEBHOOK_EVENTS)
        assert {p["name"] for p in hook["post"]["parameters"]} == {
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
        }


# --- offline docs --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_every_asset_from_the_api_itself(client: TestClient, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200
    references = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text) + re.findall(
        r"""(?:url: |spec-url=)["']([^"']+)["']""", html.text
    )
    assert references and not [ref for ref in references if "//" in ref], references
    assert "/openapi.json" in references
    for reference in references:
        asset = client.get(reference)
        assert asset.status_code == 200 and len(asset.content) > 10, reference


# --- the form ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["image", "settings", "webhook_url", "metadata"])
def test_a_repeated_field_is_refused_naming_it(client: TestClient, field: str) -> None:
    parts = [("image", ("a.png", png(), "image/png"))]
    values = {"image": ("b.png", png(), "image/png"), "settings": "{}", "webhook_url": "https://example.com/h"}
    values["metadata"] = "{}"
    parts += [(field, values[field]), (field, values[field])] if field != "image" else [(field, values[field])]
    response = client.post("/v1/jobs", files=parts, headers=AUTH)
    assert f"'{field}'" in error(response, 422, ErrorCode.INVALID_REQUEST)


def test_unknown_fields_and_missing_image_are_refused(client: TestClient) -> None:
    message = error(submit(client, colour="blue"), 422, ErrorCode.INVALID_REQUEST)
    assert "'colour'" in message
    response = client.post("/v1/jobs", data={"settings": "{}"}, files={"x": ("", b"")}, headers=AUTH)
    error(response, 422, ErrorCode.INVALID_REQUEST)
    no_image = client.post("/v1/jobs", data={"settings": "{}"}, headers=AUTH)
    error(no_image, 422, ErrorCode.INVALID_REQUEST)
    response = client.post("/v1/jobs", content=png(), headers={**AUTH, "Content-Type": "image/png"})
    assert "multipart/form-data" in error(response, 422, ErrorCode.INVALID_REQUEST)


def test_empty_text_fields_count_as_absent(client: TestClient) -> None:
    response = submit(client, settings="", webhook_url="", webhook_events="", metadata=" ")
    assert response.status_code == 202, response.text
    assert response.json()["webhook_url"] is None and response.json()["metadata"] == {}


def test_settings_may_come_as_a_json_file_part(client: TestClient) -> None:
    files = [("image", ("a.png", png(), "image/png")), ("settings", ("s.json", b'{"fps": 7}', "application/json"))]
    response = client.post("/v1/jobs", files=files, headers=AUTH)
    assert response.status_code == 202 and response.json()["settings"]["fps"] == 7


def test_size_is_auto_by_default(client: TestClient) -> None:
    settings = submit(client).json()["settings"]
    assert (settings["width"], settings["height"]) == ("auto", "auto")


# --- listing -------------------------------------------------------------------------------------------------


def test_cursor_must_be_a_job_id(client: TestClient) -> None:
    for cursor in ["abc", "job_xyz", "0-0"]:
        error(client.get("/v1/jobs", params={"cursor": cursor}, headers=AUTH), 422, ErrorCode.INVALID_CURSOR)


def test_an_exactly_full_last_page_has_no_next_cursor(client: TestClient) -> None:
    ids = [submit(client).json()["id"] for _ in range(2)]
    page = client.get("/v1/jobs", params={"limit": 2}, headers=AUTH).json()
    assert [job["id"] for job in page["jobs"]] == ids[::-1] and page["next_cursor"] is None
    first = client.get("/v1/jobs", params={"limit": 1}, headers=AUTH).json()
    assert first["next_cursor"] == ids[1]
    second = client.get("/v1/jobs", params={"limit": 1, "cursor": first["next_cursor"]}, headers=AUTH).json()
    assert [job["id"] for job in second["jobs"]] == [ids[0]] and second["next_cursor"] is None


# --- metadata ------------------------------------------------------------------------------------------------


def test_metadata_is_stored_and_echoed_in_reads_and_webhooks(services: Services) -> None:
    sent: list[tuple] = []
    queue = RecordingQueue()
    queue.deliver_webhook = lambda *args: sent.append(args)  # type: ignore[method-assign]
    notifier = WebhookNotifier(queue, services.jobs.storage, 60)  # type: ignore[arg-type]
    services.jobs.notifier = notifier
    client = client_for(services)
    metadata = {"artwork_id": "art_42", "user": "ü" * 256}
    response = submit(client, metadata=json.dumps(metadata), webhook_url="http://93.184.215.14/hook")
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert response.json()["metadata"] == metadata
    assert client.get(f"/v1/jobs/{job_id}", headers=AUTH).json()["metadata"] == metadata
    assert client.get("/v1/jobs", headers=AUTH).json()["jobs"][0]["metadata"] == metadata
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=AUTH).json()["metadata"] == metadata
    (webhook,) = sent
    body = json.loads(webhook[3])
    assert body["type"] == "job.canceled" and body["data"]["metadata"] == metadata
    assert submit(client).json()["metadata"] == {}


@pytest.mark.parametrize(
    "metadata",
    ["[1]", "not json", '{"a": 1}', '{"a": null}', json.dumps({str(i): "v" for i in range(17)}),
     json.dumps({"a": "x" * 257}), json.dumps({"k" * 257: "v"}), '{"": "v"}'],
)  # fmt: skip
def test_invalid_metadata_is_refused(client: TestClient, metadata: str) -> None:
    error(submit(client, metadata=metadata), 422, ErrorCode.INVALID_METADATA)


# --- cheap refusals, cancel ------------------------------------------------------------------------------------


def test_at_the_active_jobs_limit_the_body_is_not_read(services: Services) -> None:
    client = client_for(services)
    first = submit(client, headers={"Idempotency-Key": "one"}).json()
    submit(client)
    stored = (
        sorted(p.name for p in services.jobs.storage.root.rglob("*"))
        if hasattr(services.jobs.storage, "root")
        else None
    )
    # Not even a form: a refusal that read the body would have answered 422.
    response = client.post("/v1/jobs", content=b"garbage", headers={**AUTH, "Content-Type": "text/plain"})
    assert error(response, 429, ErrorCode.TOO_MANY_ACTIVE_JOBS)
    assert response.headers["Retry-After"]
    if stored is not None:
        assert sorted(p.name for p in services.jobs.storage.root.rglob("*")) == stored
    again = submit(client, headers={"Idempotency-Key": "one"})  # a repeat still gets its job
    assert again.status_code == 202 and again.json()["id"] == first["id"]


def test_cancel_of_a_running_job_shows_it_is_pending(client: TestClient, services: Services) -> None:
    job_id = submit(client).json()["id"]
    assert client.get(f"/v1/jobs/{job_id}", headers=AUTH).json()["cancel_requested"] is False
    services.jobs.store.start(job_id, LEASE)
    canceled = client.post(f"/v1/jobs/{job_id}/cancel", headers=AUTH).json()
    assert (canceled["status"], canceled["cancel_requested"]) == ("running", True)
    assert client.get(f"/v1/jobs/{job_id}", headers=AUTH).json()["cancel_requested"] is True


# --- event streams -------------------------------------------------------------------------------------------


def messages(text: str) -> list[dict]:
    found = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if fields:
            found.append({"id": fields["id"], "event": fields["event"], "data": json.loads(fields["data"])})
    return found


def finished_job(client: TestClient, services: Services) -> str:
    job_id = submit(client, metadata='{"artwork_id": "art_42"}').json()["id"]
    started = services.jobs.store.start(job_id, LEASE)
    assert started is not None
    video = {"key": f"jobs/{job_id}/video.mp4", "width": 768, "height": 448, "frames": 105, "fps": 4}
    services.jobs.storage.put(video["key"], b"mp4", "video/mp4")
    services.jobs.store.finish(job_id, JobStatus.SUCCEEDED, lease=started.lease, video=video)
    return job_id


def test_the_terminal_event_carries_the_job_with_its_video(client: TestClient, services: Services) -> None:
    job_id = finished_job(client, services)
    response = client.get(f"/v1/jobs/{job_id}/events", headers=AUTH)
    assert response.status_code == 200
    events = messages(response.text)
    assert events[-1]["event"] == "job.succeeded"
    job = events[-1]["data"]["job"]
    assert job["status"] == "succeeded" and job["video"]["width"] == 768 and "signature=" in job["video"]["url"]
    assert all(event["data"]["metadata"] == {"artwork_id": "art_42"} for event in events)


def test_a_resumed_stream_of_a_finished_job_ends_at_once(client: TestClient, services: Services) -> None:
    with client:  # one event loop for the requests, as in a server (the event reader's connections belong to it)
        job_id = finished_job(client, services)
        events = messages(client.get(f"/v1/jobs/{job_id}/events", headers=AUTH).text)
        resumed = client.get(f"/v1/jobs/{job_id}/events", headers={**AUTH, "Last-Event-ID": events[-1]["id"]})
        assert resumed.status_code == 204 and resumed.content == b""
        beyond = client.get(f"/v1/jobs/{job_id}/events", headers={**AUTH, "Last-Event-ID": "99999999999999-0"})
        assert beyond.status_code == 204
        earlier = client.get(f"/v1/jobs/{job_id}/events", headers={**AUTH, "Last-Event-ID": events[0]["id"]})
        assert [event["id"] for event in messages(earlier.text)] == [event["id"] for event in events[1:]]


@pytest.mark.parametrize("last_event_id", ["abc", "1-", "-1-0", "18446744073709551616-0", "0-18446744073709551616", ""])
def test_a_bad_last_event_id_is_a_json_422(client: TestClient, last_event_id: str) -> None:
    job_id = submit(client).json()["id"]
    response = client.get(f"/v1/jobs/{job_id}/events", headers={**AUTH, "Last-Event-ID": last_event_id})
    error(response, 422, ErrorCode.INVALID_LAST_EVENT_ID)


def test_an_id_past_the_last_event_of_an_unfinished_job_waits(client: TestClient, services: Services) -> None:
    job_id = submit(client).json()["id"]
    services = dataclasses.replace(
        services, events=EventReader(services.settings.redis_url, 0.2, services.jobs.store.keys)
    )

    class Connected:
        async def is_disconnected(self) -> bool:
            return False

    async def first() -> str:
        stream = events_route.event_stream(Connected(), services, job_id, f"{int(time.time() * 1000) + 10**6}-0")
        try:
            return await asyncio.wait_for(stream.__anext__(), timeout=10)
        finally:
            await stream.aclose()
            await services.events.close()

    assert asyncio.run(first()) == ": keep-alive\n\n"


# --- limits --------------------------------------------------------------------------------------------------


def test_oversized_headers_answer_431_with_the_json_error(client: TestClient) -> None:
    response = client.get("/v1/jobs", headers={**AUTH, "X-Big": "x" * 20_000})
    assert "limit is 16384" in error(response, 431, ErrorCode.HEADERS_TOO_LARGE)
    assert client.get("/v1/jobs", headers={**AUTH, "X-Fine": "x" * 8_000}).status_code == 200


def test_a_decompression_bomb_gets_our_message(client: TestClient) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)  # a PNG claiming 50000x50000 RGB pixels
    bomb = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 49)) + chunk(b"IEND", b"")
    )
    message = error(submit(client, image=bomb), 422, ErrorCode.IMAGE_TOO_LARGE)
    assert message == "the image is 50000x50000 = 2500000000 pixels; the limit is 1000000"


def test_webhooks_secret_fixture_is_used(services: Services) -> None:
    assert services.settings.webhook_secret is not None and SECRET
