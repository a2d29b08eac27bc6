"""The OpenAPI document: enough to write a client from it alone.

FastAPI builds the paths from the routes; this adds what it cannot see: each route's error statuses with their
codes and examples (`error_responses`), the event stream's messages (`sse_response`), the webhook bodies (the
document's `webhooks`), and the schemas these refer to. FastAPI's own 422 body is never sent, so it is dropped.
"""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api.errors import ErrorResponse
from jobs.errors import ErrorCode
from jobs.records import EventType
from jobs.schemas import EVENT_DATA, WebhookBody
from jobs.webhooks import WEBHOOK_EVENTS
from model_core.settings import RenderSettings

REF = "#/components/schemas/{model}"

STATUS_TEXT = {
    401: "No API key, or an unknown one",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Upload too large",
    415: "Unsupported image type",
    422: "Invalid request",
    429: "Too many active jobs: retry after Retry-After seconds",
    431: "Request headers too large",
    503: "A dependency is unreachable; nothing was changed: retry after Retry-After seconds",
}

# An example message per code, as the service words it.
EXAMPLE_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.MISSING_API_KEY: "send the header Authorization: Bearer <API key>",
    ErrorCode.INVALID_API_KEY: "the API key is not valid",
    ErrorCode.INVALID_OR_EXPIRED_URL: "the URL has expired",
    ErrorCode.JOB_NOT_FOUND: "no such job for this API key",
    ErrorCode.FILE_NOT_FOUND: "no such file",
    ErrorCode.IDEMPOTENCY_KEY_REUSED: "this Idempotency-Key was used for a different request",
    ErrorCode.UPLOAD_TOO_LARGE: "the image is 31457280 bytes; the limit is 20971520",
    ErrorCode.UNSUPPORTED_IMAGE_TYPE: "the image must be a PNG, JPEG or WebP file",
    ErrorCode.IMAGE_TOO_LARGE: "the image is 20000x20000 = 400000000 pixels; the limit is 16777216",
    ErrorCode.INVALID_IMAGE: "the image could not be decoded: image file is truncated",
    ErrorCode.INVALID_SETTINGS: 'width: Value error, must be "auto" or an integer 256..1024 that is a multiple of 64',
    ErrorCode.INVALID_WEBHOOK_URL: "webhook_url must be an http or https URL",
    ErrorCode.WEBHOOK_URL_FORBIDDEN: "webhook_url resolves to a private address",
    ErrorCode.INVALID_WEBHOOK_EVENTS: "unknown webhook events ['job.done']; valid events are job.started, ...",
    ErrorCode.WEBHOOKS_NOT_CONFIGURED: "this server has no PAINTS_UNDO_WEBHOOK_SECRET",
    ErrorCode.INVALID_IDEMPOTENCY_KEY: "Idempotency-Key must be 1 to 255 characters",
    ErrorCode.INVALID_METADATA: "metadata: 17 keys; at most 16",
    ErrorCode.INVALID_CURSOR: "cursor must be a job id (a next_cursor), not 'abc'",
    ErrorCode.INVALID_LAST_EVENT_ID: "Last-Event-ID must be an event id as sent in the stream (like 1767225600000-0)",
    ErrorCode.INVALID_REQUEST: "image: the form has 2 parts named 'image'; send each field once",
    ErrorCode.TOO_MANY_ACTIVE_JOBS: "this API key already has 4 queued or running jobs; wait for one to finish",
    ErrorCode.SERVICE_UNAVAILABLE: "the job database is unreachable; retry later",
    ErrorCode.STORAGE_UNAVAILABLE: "file storage is unreachable; retry later",
    ErrorCode.NOT_READY: "redis: connection refused",
    ErrorCode.HEADERS_TOO_LARGE: "the request headers are 20480 bytes; the limit is 16384",
}

AUTH_ERRORS = (401, [ErrorCode.MISSING_API_KEY, ErrorCode.INVALID_API_KEY])


def error_responses(*statuses: tuple[int, list[ErrorCode]]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for error statuses, each listing its codes (also as `x-error-codes`) with an example each."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status, codes in statuses:
        examples = {
            code.value: {"value": {"error": {"code": code.value, "message": EXAMPLE_MESSAGES.get(code, code.value)}}}
            for code in codes
        }
        responses[status] = {
            "model": ErrorResponse,
            "description": f"{STATUS_TEXT[status]}. `error.code`: {', '.join(f'`{code}`' for code in codes)}.",
            "content": {"application/json": {"examples": examples}},
            "x-error-codes": [code.value for code in codes],
        }
        if status in (429, 503):
            responses[status]["headers"] = {
                "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
            }
    return responses


def event_schema_name(event: EventType) -> str:
    return f"Event-{event}"


def sse_response() -> dict[str, Any]:
    """The 200 response of the event stream: text/event-stream, one of the documented messages at a time."""
    return {
        "description": (
            "A `text/event-stream` of messages `id: <id>\\nevent: <type>\\ndata: <JSON>\\n\\n`, one schema per "
            "type below (the schema shows the message's three fields; `data` is sent as one line of JSON), "
            "and `: keep-alive` comments. Ends after job.succeeded, job.failed or job.canceled."
        ),
        "content": {
            "text/event-stream": {
                "schema": {"oneOf": [{"$ref": REF.format(model=event_schema_name(event))} for event in EventType]},
                "example": (
                    'id: 1767225600000-0\nevent: job.queued\ndata: {"status": "queued", "metadata": {}}\n\n'
                    'id: 1767225602000-0\nevent: job.started\ndata: {"status": "running", "attempt": 1, '
                    '"metadata": {}}\n\n'
                ),
            }
        },
    }


def model_schemas(models: list[type[BaseModel]]) -> dict[str, Any]:
    _, top = models_json_schema([(model, "serialization") for model in models], ref_template=REF)
    return top.get("$defs", {})


def webhook_operations() -> dict[str, Any]:
    body_ref = {"$ref": REF.format(model=WebhookBody.__name__)}
    headers = [
        ("webhook-id", "The message id (msg_...); the same on every retry of this message: deduplicate by it."),
        ("webhook-timestamp", "Unix seconds when this attempt was sent; refuse old ones (replays)."),
        ("webhook-signature", "`v1,` + base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` with the "
         "server's webhook secret (Standard Webhooks)."),
    ]  # fmt: skip
    operations = {}
    for event in WEBHOOK_EVENTS:
        operations[event] = {
            "post": {
                "summary": f"{event}: sent to a job's webhook_url",
                "description": (
                    f"POSTed when a job subscribed to `{event}` (webhook_events) reaches it. The body's `data` is "
                    "the job as GET returns it at that moment, with its metadata; job.succeeded carries the video. "
                    "Answer 2xx within 10 s; anything else is retried with exponential backoff."
                ),
                "parameters": [
                    {"name": name, "in": "header", "required": True, "description": text, "schema": {"type": "string"}}
                    for name, text in headers
                ],
                "requestBody": {"required": True, "content": {"application/json": {"schema": body_ref}}},
                "responses": {"2XX": {"description": "Received; no retry."}},
            }
        }
    return operations


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in model_schemas([*set(EVENT_DATA.values()), WebhookBody]).items():
        schemas.setdefault(name, schema)
    # FastAPI drops every null from the document, defaults included: RenderSettings' own schema keeps prompt's.
    schemas["RenderSettings"] = RenderSettings.model_json_schema(ref_template=REF, mode="serialization")
    for event, data in EVENT_DATA.items():
        schemas[event_schema_name(event)] = {
            "type": "object",
            "title": f"{event} message",
            "description": (data.__doc__ or "").strip(),
            "properties": {
                "id": {"type": "string", "description": "Stream entry id; resume after it with Last-Event-ID."},
                "event": {"type": "string", "const": str(event)},
                "data": {"$ref": REF.format(model=data.__name__)},
            },
            "required": ["id", "event", "data"],
        }
    # FastAPI documents its own validation body for 422; this API answers every error as ErrorResponse.
    for path in document["paths"].values():
        for operation in path.values():
            response = operation.get("responses", {}).get("422")
            if response and "HTTPValidationError" in str(response):
                del operation["responses"]["422"]
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    document["webhooks"] = webhook_operations()
    app.openapi_schema = document
    return document
