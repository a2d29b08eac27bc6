"""The client's models against the API's own OpenAPI document: every field of every mirrored schema, with its
name, whether it is required and its basic type (enums by their values). Fails when either side adds, removes,
renames or retypes a field."""

import copy
import dataclasses
import inspect
import types
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

import pytest
from paints_undo_client import AsyncClient, Client, models
from paints_undo_client.models import (
    EVENT_CLASSES,
    ErrorDetail,
    Job,
    JobPage,
    Keyframe,
    Output,
    ProgressEvent,
    RenderSettings,
    StatusEvent,
    TerminalEvent,
    Video,
    WebhookAttempt,
    WebhookEvent,
)

from api.config import ApiSettings
from api.main import create_app

# Each client class and the component schema it mirrors.
MIRRORS: dict[type, str] = {
    Job: "JobOut",
    JobPage: "JobList",
    Keyframe: "KeyframeOut",
    Video: "VideoOut",
    Output: "OutputOut",
    ErrorDetail: "ErrorOut",
    WebhookAttempt: "WebhookAttemptOut",
    RenderSettings: "RenderSettings",
    StatusEvent: "StatusEventData",
    ProgressEvent: "ProgressEventData",
    TerminalEvent: "TerminalEventData",
    WebhookEvent: "WebhookBody",
}
# Fields the client adds from outside the schema: the SSE message's id and event type, the webhook-id header.
CLIENT_ONLY = {
    StatusEvent: {"id", "type"},
    ProgressEvent: {"id", "type"},
    TerminalEvent: {"id", "type"},
    WebhookEvent: {"id"},
}
# The client method behind each operation of the API's /v1 routes.
OPERATIONS = {
    "create_job": "submit",
    "list_jobs": "list",
    "get_job": "get",
    "cancel_job": "cancel",
    "delete_job": "delete",
    "job_events": "events",
    "get_file": "download",
}
# Error codes stay plain strings in the client, so a code the API adds later does not break it.
OPEN_ENUMS = {"ErrorCode"}
SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean", datetime: "date-time"}


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The API's OpenAPI document, built in-process (no Redis is contacted to build it)."""
    folder: Path = tmp_path_factory.mktemp("storage")
    settings = ApiSettings(api_keys="k" * 20, redis_url="redis://127.0.0.1:1/0", storage_url=f"file://{folder}")
    return create_app(settings).openapi()


def schema_shape(schema: dict[str, Any], document: dict[str, Any]) -> set[str]:
    """The JSON types a schema allows: "string", "null", "array[...]", "date-time", "enum:a|b", or the name of a
    component object schema."""
    shapes, values = set(), set()
    for option in schema.get("anyOf", [schema]):
        if "$ref" in option:
            name = option["$ref"].rsplit("/", 1)[1]
            target = document["components"]["schemas"][name]
            if name in OPEN_ENUMS:
                shapes.add("string")
            elif "enum" in target:
                values |= set(target["enum"])
            else:
                shapes.add(name)
        elif "enum" in option or "const" in option:
            values |= set(option.get("enum", [option.get("const")]))
        elif option["type"] == "array":
            shapes.add(f"array[{'|'.join(sorted(schema_shape(option['items'], document)))}]")
        elif option.get("format") == "date-time":
            shapes.add("date-time")
        else:
            shapes.add(option["type"])
    return shapes | ({"enum:" + "|".join(sorted(values))} if values else set())


def type_shape(annotation: Any) -> set[str]:
    """The same for a client type annotation."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        shapes = set().union(*(type_shape(arg) for arg in get_args(annotation)))
        values = {value for shape in shapes if shape.startswith("enum:") for value in shape[5:].split("|")}
        return {shape for shape in shapes if not shape.startswith("enum:")} | (
            {"enum:" + "|".join(sorted(values))} if values else set()
        )
    if origin is Literal:
        return {"enum:" + "|".join(sorted(get_args(annotation)))}
    if origin is list:
        (item,) = get_args(annotation)
        return {f"array[{'|'.join(sorted(type_shape(item)))}]"}
    if origin is dict:
        return {"object"}
    if annotation is type(None):
        return {"null"}
    if annotation in SCALARS:
        return {SCALARS[annotation]}
    return {MIRRORS[annotation]}


def client_fields(cls: type) -> dict[str, tuple[bool, set[str]]]:
    """{name: (required, shape)} of a client dataclass or TypedDict."""
    hints = get_type_hints(cls)
    if is_typeddict(cls):
        return {name: (name in cls.__required_keys__, type_shape(hints[name])) for name in hints}
    return {
        field.name: (
            field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING,
            type_shape(hints[field.name]),
        )
        for field in dataclasses.fields(cls)
        if field.name not in CLIENT_ONLY.get(cls, set())
    }


def schema_fields(name: str, document: dict[str, Any]) -> dict[str, tuple[bool, set[str]]]:
    schema = document["components"]["schemas"][name]
    required = set(schema.get("required", []))
    return {
        field: (field in required, schema_shape(property_schema, document))
        for field, property_schema in schema["properties"].items()
    }


def differences(cls: type, name: str, document: dict[str, Any]) -> list[str]:
    """What differs between the client class and the schema it mirrors, one line per field."""
    if name not in document["components"]["schemas"]:
        return [f"{name}: no such schema in the document"]
    ours, theirs = client_fields(cls), schema_fields(name, document)
    found = []
    for field in sorted(ours.keys() | theirs.keys()):
        if field not in ours:
            found.append(f"{name}.{field}: in the API, missing from {cls.__name__}")
        elif field not in theirs:
            found.append(f"{cls.__name__}.{field}: not in the API's {name}")
        elif ours[field] != theirs[field]:
            (required, shape), (api_required, api_shape) = ours[field], theirs[field]
            found.append(
                f"{cls.__name__}.{field}: required={required} {sorted(shape)}, "
                f"API {name}.{field}: required={api_required} {sorted(api_shape)}"
            )
    return found


@pytest.mark.parametrize("cls", MIRRORS, ids=lambda cls: cls.__name__)
def test_each_model_matches_its_schema(cls: type, document: dict[str, Any]) -> None:
    assert differences(cls, MIRRORS[cls], document) == []


def test_the_error_envelope_is_an_error_detail_under_error(document: dict[str, Any]) -> None:
    envelope = document["components"]["schemas"]["ErrorResponse"]
    assert envelope["required"] == ["error"] and schema_shape(envelope["properties"]["error"], document) == {
        "ErrorBody"
    }
    assert differences(ErrorDetail, "ErrorBody", document) == []


def test_every_event_type_has_its_class(document: dict[str, Any]) -> None:
    messages = {
        name.removeprefix("Event-"): schema
        for name, schema in document["components"]["schemas"].items()
        if name.startswith("Event-")
    }
    assert set(messages) == set(EVENT_CLASSES) == set(get_args(models.EventType))
    for event, message in messages.items():
        assert message["properties"]["event"]["const"] == event
        assert schema_shape(message["properties"]["data"], document) == {MIRRORS[EVENT_CLASSES[event]]}, event


def test_every_operation_has_its_method(document: dict[str, Any]) -> None:
    operations = {
        operation["operationId"]
        for path, item in document["paths"].items()
        if path.startswith("/v1/")
        for operation in item.values()
    }
    assert operations == set(OPERATIONS)
    assert all(callable(getattr(Client, method)) for method in OPERATIONS.values())


def test_submit_sends_every_part_of_the_form(document: dict[str, Any]) -> None:
    operation = document["paths"]["/v1/jobs"]["post"]
    form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    parameters = set(inspect.signature(Client.submit).parameters) - {"self", "idempotency_key"}
    assert {"keyframe" if name == "keyframes" else name for name in parameters} == set(form)
    assert [p["name"] for p in operation["parameters"] if p["in"] == "header"] == ["Idempotency-Key"]


def test_the_async_client_mirrors_the_client() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {name: inspect.signature(value) for name, value in vars(cls).items() if not name.startswith("_")}

    sync, asynchronous = public(Client), public(AsyncClient)
    assert sync.keys() == asynchronous.keys()
    for name, signature in sync.items():
        assert list(signature.parameters) == list(asynchronous[name].parameters), name


@pytest.mark.parametrize(
    "change",
    [
        lambda schema: schema["properties"].update(artist={"type": "string"}),  # added
        lambda schema: schema["properties"].pop("prompt"),  # removed
        lambda schema: schema["properties"].update(tag_prompt=schema["properties"].pop("prompt")),  # renamed
        lambda schema: schema["properties"].update(progress={"type": "string"}),  # retyped
        lambda schema: schema["required"].remove("stage"),  # made optional
        lambda schema: schema["properties"]["keyframes"]["items"].update({"$ref": "#/components/schemas/VideoOut"}),
    ],
    ids=["added", "removed", "renamed", "retyped", "optional", "item type"],
)
def test_the_comparison_notices_a_changed_field(change: Any, document: dict[str, Any]) -> None:
    changed = copy.deepcopy(document)
    change(changed["components"]["schemas"]["JobOut"])
    assert differences(Job, "JobOut", changed)
