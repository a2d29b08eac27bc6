"""jobs.storage against real stores: moto's S3 server in a subprocess, and a folder in tmp_path."""

import calendar
import os
import re
import stat
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.client import BaseClient
from services import free_port, start_moto_server

from jobs.settings import ServiceSettings
from jobs.storage import (
    LocalStorage,
    S3Storage,
    SignatureError,
    Storage,
    StorageError,
    StorageNotFound,
    check_key,
    check_prefix,
    open_storage,
)

BUCKET = "paints-undo-test"
SECRET = b"test secret"
API = "http://api.test"
BIG = 9 * 1024 * 1024  # over boto3's 8 MiB multipart threshold


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's server with one bucket; fake credentials in the environment for every client made meanwhile."""
    aws_files = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as patch, start_moto_server() as url:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        # This machine's own AWS profile, if any, stays out of it.
        patch.setenv("AWS_CONFIG_FILE", str(aws_files / "config"))
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(aws_files / "credentials"))
        patch.delenv("AWS_PROFILE", raising=False)
        patch.delenv("AWS_SESSION_TOKEN", raising=False)
        raw_client(url).create_bucket(Bucket=BUCKET)
        yield url


def raw_client(endpoint: str) -> BaseClient:
    """A plain boto3 client, to look at the bucket without going through S3Storage."""
    return boto3.client("s3", endpoint_url=endpoint)


@pytest.fixture
def s3(s3_endpoint: str) -> S3Storage:
    """A store under a prefix of its own, so tests share the bucket without seeing each other's objects."""
    return S3Storage(BUCKET, prefix=f"test-{uuid.uuid4().hex}", endpoint_url=s3_endpoint)


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "files", SECRET, API + "/")


@pytest.fixture(params=["s3", "local"])
def storage(request: pytest.FixtureRequest) -> Storage:
    return request.getfixturevalue(request.param)


def open_local_url(storage: LocalStorage, url: str, now: float | None = None) -> Path:
    """What the API's /v1/files/ route does with a URL from `LocalStorage.url`."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query, strict_parsing=True)
    key = parts.path.removeprefix("/v1/files/")
    return storage.open_signed(key, int(query["expires"][0]), query["signature"][0], now=now)


def fetch(storage: Storage, url: str) -> bytes:
    if isinstance(storage, LocalStorage):
        return open_local_url(storage, url).read_bytes()
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def files_under(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


# Both backends


def test_bytes_round_trip_and_overwrite(storage: Storage):
    storage.put("jobs/1/input.png", b"first", "image/png")
    assert storage.get("jobs/1/input.png") == b"first"
    storage.put("jobs/1/input.png", b"second", "image/png")
    assert storage.get("jobs/1/input.png") == b"second"


def test_file_round_trip_of_several_megabytes(storage: Storage, tmp_path: Path):
    data = os.urandom(BIG)
    (tmp_path / "result.mp4").write_bytes(data)
    storage.put("jobs/1/result.mp4", tmp_path / "result.mp4", "video/mp4")
    assert storage.get("jobs/1/result.mp4") == data
    with pytest.raises(FileNotFoundError):  # the caller's own file, not the store, is missing
        storage.put("jobs/1/other.mp4", tmp_path / "missing.mp4", "video/mp4")


def test_missing_key_is_storage_not_found(storage: Storage):
    storage.put("jobs/1/a", b"a", "text/plain")
    for key in ("jobs/1/b", "jobs/2/a", "jobs/1"):  # the last one is a "folder" of the local backend
        with pytest.raises(StorageNotFound):
            storage.get(key)


def test_delete_prefix_removes_only_that_prefix(storage: Storage):
    for key in ("jobs/1/a", "jobs/1/sub/b", "jobs/10/a", "jobs/2/a", "jobs/1.txt"):
        storage.put(key, key.encode(), "text/plain")
    storage.delete_prefix("jobs/1/")
    for key in ("jobs/1/a", "jobs/1/sub/b"):
        with pytest.raises(StorageNotFound):
            storage.get(key)
    for key in ("jobs/10/a", "jobs/2/a", "jobs/1.txt"):
        assert storage.get(key) == key.encode()
    storage.delete_prefix("jobs/1/")  # nothing left there: fine
    storage.delete_prefix("never/")
    with pytest.raises(ValueError, match="end with '/'"):
        storage.delete_prefix("jobs/2")  # would also reach jobs/20/
    assert storage.get("jobs/2/a") == b"jobs/2/a"


def test_keys_are_checked_before_any_request(storage: Storage, tmp_path: Path):
    for key in ("../escape", "/etc/passwd", "jobs//a", "jobs/./a"):
        with pytest.raises(ValueError, match="storage key"):
            storage.put(key, b"x", "text/plain")
        with pytest.raises(ValueError, match="storage key"):
            storage.get(key)
        with pytest.raises(ValueError, match="storage key"):
            storage.url(key, 60)
    assert not (tmp_path / "escape").exists()


def test_url_gives_the_bytes(storage: Storage):
    storage.put("jobs/1/result.mp4", b"video bytes", "video/mp4")
    assert fetch(storage, storage.url("jobs/1/result.mp4", 60)) == b"video bytes"
    with pytest.raises(ValueError, match="expires_in"):
        storage.url("jobs/1/result.mp4", 0)


def test_check_passes_on_a_working_store(storage: Storage):
    storage.put("jobs/1/a", b"a", "text/plain")  # makes the local folder
    storage.check()


# S3


def test_s3_keeps_the_content_type_under_its_prefix(s3: S3Storage, s3_endpoint: str, tmp_path: Path):
    (tmp_path / "big.mp4").write_bytes(os.urandom(BIG))
    s3.put("jobs/1/input.png", b"png", "image/png")
    s3.put("jobs/1/result.mp4", tmp_path / "big.mp4", "video/mp4")
    raw = raw_client(s3_endpoint)
    listed = raw.list_objects_v2(Bucket=BUCKET, Prefix=s3.prefix)["Contents"]
    assert sorted(item["Key"] for item in listed) == [s3.prefix + "jobs/1/input.png", s3.prefix + "jobs/1/result.mp4"]
    assert raw.head_object(Bucket=BUCKET, Key=s3.prefix + "jobs/1/input.png")["ContentType"] == "image/png"
    video = raw.head_object(Bucket=BUCKET, Key=s3.prefix + "jobs/1/result.mp4")
    assert video["ContentType"] == "video/mp4" and video["ContentLength"] == BIG
    assert video["ETag"].endswith('-2"')  # uploaded in two parts


def test_s3_url_is_presigned_on_the_public_endpoint(s3_endpoint: str):
    public = s3_endpoint.replace("127.0.0.1", "localhost")
    s3 = S3Storage(BUCKET, "public", endpoint_url=s3_endpoint, public_endpoint_url=public)
    s3.put("jobs/1/result.mp4", b"video bytes", "video/mp4")
    url = s3.url("jobs/1/result.mp4", 90)
    assert url.startswith(f"{public}/{BUCKET}/public/jobs/1/result.mp4?")  # path-style
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"video bytes"
        assert response.headers["Content-Type"] == "video/mp4"
    # moto checks neither signatures nor expiry, so a URL fetched after it expired would still work there;
    # what can be checked is that the URL carries its lifetime under SigV4.
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and query["X-Amz-Expires"] == ["90"]
    signed_at = calendar.timegm(time.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ"))
    assert abs(signed_at - time.time()) < 60


def test_s3_unreachable_endpoint_is_a_storage_error(tmp_path: Path):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connections are refused
    s3 = S3Storage(BUCKET, endpoint_url=endpoint)
    (tmp_path / "a").write_bytes(b"a")
    calls = [
        s3.check,
        lambda: s3.get("jobs/1/a"),
        lambda: s3.put("jobs/1/a", b"a", "text/plain"),
        lambda: s3.put("jobs/1/a", tmp_path / "a", "text/plain"),
        lambda: s3.delete_prefix("jobs/1/"),
    ]
    for call in calls:
        with pytest.raises(StorageError, match=f"cannot reach bucket {BUCKET} at {endpoint}") as raised:
            call()
        assert type(raised.value) is StorageError  # not StorageNotFound, and not botocore's own


def test_s3_missing_bucket_is_a_storage_error_naming_it(s3_endpoint: str, tmp_path: Path):
    s3 = S3Storage("no-such-bucket", endpoint_url=s3_endpoint)
    (tmp_path / "a").write_bytes(b"a")
    calls = [
        s3.check,
        lambda: s3.get("jobs/1/a"),
        lambda: s3.put("jobs/1/a", b"a", "text/plain"),
        lambda: s3.put("jobs/1/a", tmp_path / "a", "text/plain"),  # boto3 wraps this one's ClientError
        lambda: s3.delete_prefix("jobs/1/"),
    ]
    missing = "bucket no-such-bucket at .* does not exist; create it or fix PAINTS_UNDO_STORAGE_URL"
    for call in calls:
        with pytest.raises(StorageError, match=missing) as raised:
            call()
        assert type(raised.value) is StorageError


def test_s3_without_credentials_says_which_to_set(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookup off this machine
    s3 = S3Storage(BUCKET, endpoint_url=s3_endpoint)
    with pytest.raises(StorageError, match="AWS_ACCESS_KEY_ID"):
        s3.put("jobs/1/a", b"a", "text/plain")
    with pytest.raises(StorageError, match="AWS_ACCESS_KEY_ID"):
        s3.url("jobs/1/a", 60)


# Folder


def test_local_writes_leave_no_partial_files(local: LocalStorage, tmp_path: Path):
    (tmp_path / "source").write_bytes(b"from a file")
    local.put("jobs/1/a", b"bytes", "text/plain")
    local.put("jobs/1/a", b"replaced", "text/plain")
    local.put("jobs/1/b", tmp_path / "source", "text/plain")
    with pytest.raises(StorageError, match="could not write"):
        local.put("jobs/1", b"a folder is there", "text/plain")  # the rename fails after the copy
    assert files_under(local.root) == {"jobs/1/a", "jobs/1/b"}
    assert (local.root / "jobs/1/a").read_bytes() == b"replaced"
    assert stat.S_IMODE((local.root / "jobs/1/a").stat().st_mode) == 0o600


def test_local_url_names_the_key_expiry_and_signature(local: LocalStorage):
    local.put("jobs/1/result.mp4", b"video", "video/mp4")
    before = int(time.time())
    url = local.url("jobs/1/result.mp4", 90)
    match = re.fullmatch(rf"{API}/v1/files/jobs/1/result\.mp4\?expires=(\d+)&signature=([0-9a-f]{{64}})", url)
    assert match is not None
    assert before + 90 <= int(match[1]) <= int(time.time()) + 90
    assert open_local_url(local, url) == local.root / "jobs/1/result.mp4"


def test_local_open_signed_refuses_forged_and_expired_urls(local: LocalStorage):
    local.put("jobs/1/a", b"a", "text/plain")
    local.put("jobs/2/a", b"b", "text/plain")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(local.url("jobs/1/a", 60)).query)
    expires, signature = int(query["expires"][0]), query["signature"][0]
    assert local.open_signed("jobs/1/a", expires, signature) == local.root / "jobs/1/a"
    assert local.open_signed("jobs/1/a", expires, signature, now=expires) == local.root / "jobs/1/a"
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    forged = [
        ("jobs/1/a", expires, flipped),
        ("jobs/2/a", expires, signature),  # another key that exists
        ("jobs/1/a", expires + 3600, signature),  # a longer life
        ("jobs/1/a", expires, signature.upper()),
        ("jobs/1/a", expires, ""),
        ("jobs/1/a", expires, "é" * 64),  # non-ASCII: refused, not a TypeError
        ("../../etc/passwd", expires, signature),
    ]
    for key, when, sig in forged:
        with pytest.raises(SignatureError, match="wrong signature"):
            local.open_signed(key, when, sig)
    with pytest.raises(SignatureError, match="expired"):
        local.open_signed("jobs/1/a", expires, signature, now=expires + 1)
    other = LocalStorage(local.root, b"another secret", API)
    with pytest.raises(SignatureError):
        other.open_signed("jobs/1/a", expires, signature)
    assert issubclass(SignatureError, StorageNotFound)  # callers that only know "not found" still refuse


def test_local_open_signed_of_a_deleted_file_is_not_found(local: LocalStorage):
    local.put("jobs/1/a", b"a", "text/plain")
    url = local.url("jobs/1/a", 60)
    local.delete_prefix("jobs/1/")
    with pytest.raises(StorageNotFound) as raised:
        open_local_url(local, url)
    assert not isinstance(raised.value, SignatureError)


def test_local_check_needs_the_folder(tmp_path: Path):
    with pytest.raises(StorageError, match="does not exist"):
        LocalStorage(tmp_path / "missing", SECRET, API).check()
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageError, match="does not exist"):
        LocalStorage(tmp_path / "file", SECRET, API).check()
    with pytest.raises(ValueError, match="secret"):
        LocalStorage(tmp_path, b"", API)


# Keys


@pytest.mark.parametrize("key", ["a", "jobs/abc-123/input.png", "A_b.c-d/e", "jobs/x..y/z", "a" * 512])
def test_check_key_accepts(key: str):
    assert check_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/jobs/a",
        "jobs/a/",
        "jobs//a",
        ".",
        "..",
        "jobs/../a",
        "jobs/./a",
        "../a",
        ".url-secret",
        "jobs/.a.part",
        "jobs/a b",
        "jobs\\a",
        "jobs/é",
        "jobs/a\n",
        "jobs/a\x00",
        "jobs/a?b",
        "a" * 513,
    ],
)
def test_check_key_refuses(key: str):
    with pytest.raises(ValueError, match="storage key"):
        check_key(key)


def test_check_prefix():
    assert check_prefix("jobs/1/") == "jobs/1/"
    for prefix in ("jobs/1", "/", "", "jobs//", "../"):
        with pytest.raises(ValueError):
            check_prefix(prefix)


# open_storage


def settings(storage_url: str, **values: object) -> ServiceSettings:
    """Settings that ignore this machine's PAINTS_UNDO_URL_SECRET and PAINTS_UNDO_PUBLIC_URL."""
    return ServiceSettings(storage_url=storage_url, **{"url_secret": None, "public_url": API, **values})


def test_open_storage_s3_with_prefix_and_public_endpoint(s3_endpoint: str):
    storage = open_storage(
        settings(
            f"s3://{BUCKET}/deploy/v1/",
            s3_endpoint_url=s3_endpoint,
            s3_public_endpoint_url="http://public.example:9000",
        )
    )
    assert isinstance(storage, S3Storage)
    storage.put("jobs/1/a", b"a", "text/plain")
    assert raw_client(s3_endpoint).get_object(Bucket=BUCKET, Key="deploy/v1/jobs/1/a")["Body"].read() == b"a"
    assert storage.url("jobs/1/a", 60).startswith(f"http://public.example:9000/{BUCKET}/deploy/v1/jobs/1/a?")
    bare = open_storage(settings(f"s3://{BUCKET}", s3_endpoint_url=s3_endpoint))
    assert bare.get("deploy/v1/jobs/1/a") == b"a"


def test_open_storage_relative_and_absolute_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    relative = open_storage(settings("file://./data", public_url="https://paints.example/"))
    relative.put("jobs/1/a", b"relative", "text/plain")
    assert (tmp_path / "data/jobs/1/a").read_bytes() == b"relative"
    assert relative.url("jobs/1/a", 60).startswith("https://paints.example/v1/files/jobs/1/a?expires=")
    absolute = open_storage(settings(f"file://{tmp_path / 'abs'}"))  # file:///tmp/...
    absolute.put("jobs/1/a", b"absolute", "text/plain")
    assert (tmp_path / "abs/jobs/1/a").read_bytes() == b"absolute"


def test_open_storage_makes_the_url_secret_once_and_shares_it(tmp_path: Path):
    url_setting = f"file://{tmp_path / 'data'}"
    first = open_storage(settings(url_setting))
    secret_file = tmp_path / "data/.url-secret"
    text = secret_file.read_text()
    assert re.fullmatch("[0-9a-f]{64}", text)
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert files_under(tmp_path / "data") == {".url-secret"}  # no temporary file left
    first.put("jobs/1/a", b"a", "text/plain")
    url = first.url("jobs/1/a", 60)

    second = open_storage(settings(url_setting))  # another process on the same machine
    assert secret_file.read_text() == text
    assert open_local_url(second, url).read_bytes() == b"a"

    elsewhere = open_storage(settings(f"file://{tmp_path / 'other'}"))
    assert (tmp_path / "other/.url-secret").read_text() != text
    with pytest.raises(SignatureError):
        open_local_url(elsewhere, url)


def test_open_storage_uses_the_url_secret_setting(tmp_path: Path):
    storage = open_storage(settings(f"file://{tmp_path}", url_secret="from the setting"))
    storage.put("jobs/1/a", b"a", "text/plain")
    assert not (tmp_path / ".url-secret").exists()
    same_secret = LocalStorage(tmp_path, b"from the setting", API)
    assert open_local_url(same_secret, storage.url("jobs/1/a", 60)).read_bytes() == b"a"


def test_open_storage_refuses_a_damaged_secret_file(tmp_path: Path):
    (tmp_path / ".url-secret").write_text("not hex")
    with pytest.raises(StorageError, match="delete it"):
        open_storage(settings(f"file://{tmp_path}"))


@pytest.mark.parametrize(
    "url", ["", "data", "./data", "/var/data", "http://host/x", "gs://bucket", "s3://", "s3:///prefix", "file://"]
)
def test_open_storage_refuses_other_urls(url: str):
    with pytest.raises(ValueError, match="PAINTS_UNDO_STORAGE_URL.*s3://BUCKET.*file://FOLDER"):
        open_storage(settings(url))
