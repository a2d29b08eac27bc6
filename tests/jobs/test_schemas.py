"""jobs.schemas: the client's metadata, and the job object's fields that tell a client what is going on."""

import json
from pathlib import Path

import pytest

from jobs.errors import ErrorCode, InvalidRequest
from jobs.records import Job, JobStatus
from jobs.schemas import job_view, parse_metadata
from jobs.storage import LocalStorage


def test_metadata_is_a_small_object_of_strings() -> None:
    assert parse_metadata(None) == {}
    assert parse_metadata("{}") == {}
    value = {f"k{i}": "v" * 256 for i in range(16)}
    assert parse_metadata(json.dumps(value)) == value


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("nope", "not valid JSON"),
        ("[]", "JSON object"),
        ('"a"', "JSON object"),
        (json.dumps({f"k{i}": "v" for i in range(17)}), "17 keys"),
        ('{"a": 1}', "'a' must be a string"),
        ('{"a": {"b": "c"}}', "'a' must be a string"),
        (json.dumps({"a": "v" * 257}), "257 characters"),
        (json.dumps({"k" * 257: "v"}), "1 to 256 characters"),
        ('{"": "v"}', "1 to 256 characters"),
    ],
)
def test_bad_metadata_is_refused_saying_why(text: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_metadata(text)
    assert caught.value.code == ErrorCode.INVALID_METADATA and words in str(caught.value)


def test_the_job_object_carries_metadata_cancel_requested_and_auto_sizes(tmp_path: Path) -> None:
    job = Job(
        id="job_0193a1b2c3d4e5f60718293a4b5c",
        owner="o",
        status=JobStatus.RUNNING,
        settings={"width": "auto", "height": "auto"},
        input_key="in",
        created_at=1.0,
        cancel_requested=True,
        metadata={"artwork_id": "art_42"},
    )
    view = job_view(job, LocalStorage(tmp_path, b"k" * 32, "http://api"), 60).model_dump(mode="json")
    assert view["cancel_requested"] is True and view["status"] == "running"
    assert view["metadata"] == {"artwork_id": "art_42"}
    assert (view["settings"]["width"], view["settings"]["height"], view["settings"]["fps"]) == ("auto", "auto", 4)
