"""Where job inputs and results live: an S3 bucket, or a folder on one machine, behind one `Storage` interface.

Light: no torch, so the API imports it. Both backends hand out URLs that expire: S3 presigns them; the folder
backend signs them with an HMAC that the API checks (`LocalStorage.open_signed`) when it serves /v1/files/.
"""

import hashlib
import hmac
import io
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import boto3
from boto3.exceptions import Boto3Error, S3UploadFailedError
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from jobs.settings import ServiceSettings

KEY_PATTERN = re.compile(r"[A-Za-z0-9._/-]{1,512}")
SECRET_FILE = ".url-secret"
S3_MISSING_CODES = {"NoSuchKey", "NotFound", "404"}
S3_DENIED_CODES = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}


class StorageError(Exception):
    """The store could not be reached or refused a request; the message says what to check."""


class StorageNotFound(StorageError):
    """No object has this key."""


class SignatureError(StorageNotFound):
    """A file URL's signature is wrong or has expired (a StorageNotFound too, so callers may treat it as one)."""


class Storage(Protocol):
    """Job inputs and results, under keys such as `jobs/<id>/result.mp4` (see `check_key`)."""

    def put(self, key: str, data: bytes | Path, content_type: str) -> None:
        """Stores `data` (bytes, or a file to upload) under `key`, replacing what was there."""

    def get(self, key: str) -> bytes:
        """The bytes under `key`; StorageNotFound when there are none."""

    def delete_prefix(self, prefix: str) -> None:
        """Deletes every object under `prefix` (a key followed by '/', e.g. `jobs/<id>/`); none there is fine."""

    def url(self, key: str, expires_in: int) -> str:
        """A GET URL for `key` that stops working `expires_in` seconds from now."""

    def check(self) -> None:
        """Raises StorageError when the store cannot be reached (the API's /readyz)."""


def check_key(key: str) -> str:
    """`key` when it is a safe object name and relative path, else ValueError."""
    if not KEY_PATTERN.fullmatch(key):
        raise ValueError(f"storage key {key!r} is not 1 to 512 characters of A-Z a-z 0-9 . _ / -")
    # Refusing every segment that starts with "." (not only "." and "..") also keeps keys off the folder
    # backend's own files: its partial writes and its URL secret.
    if any(not segment or segment.startswith(".") for segment in key.split("/")):
        raise ValueError(f"storage key {key!r} has an empty segment or one starting with '.' ('/a', 'a//b', '..')")
    return key


def check_prefix(prefix: str) -> str:
    """`prefix` when it is a key followed by '/', so that `jobs/1/` never reaches `jobs/10/`; else ValueError."""
    if not prefix.endswith("/"):
        raise ValueError(f"storage prefix {prefix!r} must end with '/'")
    check_key(prefix[:-1])
    return prefix


@dataclass(frozen=True)
class Timeouts:
    """How long one storage request may wait, and how often it is tried."""

    connect: float
    read: float
    attempts: int


# The API answers within seconds even when storage hangs (its clients retry a 503); workers ride out hiccups.
INTERACTIVE = Timeouts(connect=2, read=4, attempts=1)
PATIENT = Timeouts(connect=5, read=30, attempts=3)


def s3_client(endpoint_url: str | None, timeouts: Timeouts = PATIENT) -> BaseClient:
    """An S3 client that gives up on a dead or hung endpoint within `timeouts`, with path-style URLs for
    S3-compatible servers."""
    options = {
        "connect_timeout": timeouts.connect,
        "read_timeout": timeouts.read,
        "retries": {"mode": "standard", "total_max_attempts": timeouts.attempts},
        "signature_version": "s3v4",
    }
    if endpoint_url is not None:
        options |= {
            # MinIO and moto serve every bucket under one host name (http://host/bucket/key), not bucket.host.
            "s3": {"addressing_style": "path"},
            # botocore's default CRC checksums (since 1.36) are refused by some S3-compatible servers.
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
        }
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=Config(**options))


class S3Storage:
    """Objects in an S3 bucket: AWS, or MinIO and other S3-compatible servers through `endpoint_url`."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        client: BaseClient | None = None,
        timeouts: Timeouts = PATIENT,
    ) -> None:
        self.bucket = bucket
        self.prefix = check_prefix(prefix.strip("/") + "/") if prefix.strip("/") else ""
        self._client = client or s3_client(endpoint_url, timeouts)
        # A presigned URL names the endpoint its client was made for; clients outside the docker network
        # reach the server by another name than the workers do.
        self._public_client = s3_client(public_endpoint_url) if public_endpoint_url else self._client

    def put(self, key: str, data: bytes | Path, content_type: str) -> None:
        """Uploads bytes in one request, or a file with upload_file (multipart when it is big)."""
        name = self.prefix + check_key(key)
        with self._errors(f"upload {key}"):
            if isinstance(data, Path):
                self._client.upload_file(str(data), self.bucket, name, ExtraArgs={"ContentType": content_type})
            else:
                self._client.put_object(Bucket=self.bucket, Key=name, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        """The object's bytes; StorageNotFound when there is none."""
        name = self.prefix + check_key(key)
        with self._errors(f"download {key}", key=key):
            return self._client.get_object(Bucket=self.bucket, Key=name)["Body"].read()

    def delete_prefix(self, prefix: str) -> None:
        """Deletes the objects under `prefix`, a thousand per request."""
        name = self.prefix + check_prefix(prefix)
        with self._errors(f"delete {prefix}"):
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=name):
                objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if not objects:
                    continue
                response = self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
                if response.get("Errors"):
                    first = response["Errors"][0]
                    raise StorageError(
                        f"could not delete {len(response['Errors'])} objects under {prefix} in {self._where()}, "
                        f"first {first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                    )

    def url(self, key: str, expires_in: int) -> str:
        """A presigned GET URL on the public endpoint; made locally, without a request."""
        if expires_in < 1:
            raise ValueError(f"expires_in must be at least 1 second, not {expires_in}")
        name = self.prefix + check_key(key)
        with self._errors(f"sign a URL for {key}"):
            return self._public_client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": name}, ExpiresIn=expires_in
            )

    def check(self) -> None:
        """HEAD the bucket: the endpoint answers, the credentials are good and the bucket exists."""
        with self._errors("check the bucket"):
            self._client.head_bucket(Bucket=self.bucket)

    def _where(self) -> str:
        return f"bucket {self.bucket} at {self._client.meta.endpoint_url}"

    @contextmanager
    def _errors(self, doing: str, key: str | None = None) -> Iterator[None]:
        """Turns botocore's and boto3's errors into StorageError; a missing `key` into StorageNotFound."""
        try:
            yield
        except (BotoCoreError, ClientError, Boto3Error) as exc:
            raise self._storage_error(exc, doing, key) from exc

    def _storage_error(self, exc: Exception, doing: str, key: str | None) -> StorageError:
        # upload_file hides the ClientError (and so its code) behind an S3UploadFailedError.
        if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, ClientError):
            exc = exc.__context__
        where = self._where()
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return StorageError(
                f"could not {doing} in {where}: no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or an AWS profile or role)"
            )
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            return StorageError(
                f"could not {doing}: cannot reach {where} ({exc}); check PAINTS_UNDO_S3_ENDPOINT_URL "
                "and that the server is up"
            )
        if not isinstance(exc, ClientError):
            return StorageError(f"could not {doing} in {where}: {exc}")
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in S3_MISSING_CODES and key is not None:
            return StorageNotFound(f"no object {key} in {where}")
        if code == "NoSuchBucket" or code in S3_MISSING_CODES:
            return StorageError(f"could not {doing}: {where} does not exist; create it or fix PAINTS_UNDO_STORAGE_URL")
        if code in S3_DENIED_CODES:
            return StorageError(
                f"could not {doing}: {where} refused the request ({code}); check the S3 credentials "
                "and the bucket's policy"
            )
        return StorageError(f"could not {doing} in {where}: {exc}")


class LocalStorage:
    """Files in a folder, for one machine; its URLs point at the API's /v1/files/, which checks their signature."""

    def __init__(self, root: Path, secret: bytes, base_url: str) -> None:
        if not secret:
            raise ValueError("LocalStorage needs a non-empty secret to sign its URLs")
        self.root = root
        self.base_url = base_url.rstrip("/")
        self._secret = secret

    def put(self, key: str, data: bytes | Path, content_type: str) -> None:
        """Writes root/key through a temporary file, so a partial file never appears; content_type is not kept."""
        path = self.root / check_key(key)
        source = data.open("rb") if isinstance(data, Path) else io.BytesIO(data)
        with source:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                # mkstemp's mode 0600 stays after the rename: job inputs are users' pictures.
                fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
                try:
                    with os.fdopen(fd, "wb") as file:
                        shutil.copyfileobj(source, file)
                    os.replace(temp, path)
                except BaseException:
                    Path(temp).unlink(missing_ok=True)
                    raise
            except OSError as exc:
                raise StorageError(f"could not write {path}: {exc}; check the folder's permissions and space") from exc

    def get(self, key: str) -> bytes:
        """The file's bytes; StorageNotFound when there is no such file."""
        path = self.root / check_key(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise StorageNotFound(f"no file {key} in {self.root}") from exc
        except OSError as exc:
            raise StorageError(f"could not read {path}: {exc}") from exc

    def delete_prefix(self, prefix: str) -> None:
        """Removes the folder root/prefix and everything in it."""
        folder = self.root / check_prefix(prefix)
        if not folder.is_dir():
            return
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            return  # another process deleted it first
        except OSError as exc:
            raise StorageError(f"could not delete {folder}: {exc}") from exc

    def url(self, key: str, expires_in: int) -> str:
        """`{base_url}/v1/files/{key}?expires=<unix time>&signature=<hex HMAC-SHA256>`; keys need no quoting."""
        if expires_in < 1:
            raise ValueError(f"expires_in must be at least 1 second, not {expires_in}")
        expires = int(time.time()) + expires_in
        return f"{self.base_url}/v1/files/{check_key(key)}?expires={expires}&signature={self._sign(key, expires)}"

    def open_signed(self, key: str, expires: int, signature: str, now: float | None = None) -> Path:
        """The file a `url()` names; SignatureError when forged or expired, StorageNotFound when it is gone."""
        # Bytes, not str: compare_digest raises TypeError on a non-ASCII str, and the signature is the caller's.
        if not hmac.compare_digest(self._sign(key, expires).encode(), signature.encode()):
            raise SignatureError(f"wrong signature for {key}")
        if (time.time() if now is None else now) > expires:
            raise SignatureError(f"the URL for {key} expired at {expires}")
        try:
            path = self.root / check_key(key)
        except ValueError as exc:  # only with a signature made from a leaked secret
            raise StorageNotFound(str(exc)) from exc
        if not path.is_file():
            raise StorageNotFound(f"no file {key} in {self.root}")
        return path

    def check(self) -> None:
        """The folder exists and this process may write to it."""
        if not self.root.is_dir():
            raise StorageError(f"storage folder {self.root} does not exist; check PAINTS_UNDO_STORAGE_URL")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageError(f"storage folder {self.root} is not writable by this process (uid {os.getuid()})")

    def _sign(self, key: str, expires: int) -> str:
        return hmac.new(self._secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()


def shared_secret(root: Path) -> bytes:
    """The URL-signing secret kept in root/.url-secret, made once with mode 0600 so the API and workers agree."""
    path = root / SECRET_FILE
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            fd, temp = tempfile.mkstemp(dir=root, prefix=f"{SECRET_FILE}.")  # mode 0600
            try:
                with os.fdopen(fd, "w") as file:
                    file.write(secrets.token_hex(32))
                # A link, unlike a rename, never replaces: of processes starting together the first one's secret
                # wins, and none reads a half-written file.
                os.link(temp, path)
            except FileExistsError:
                pass
            finally:
                os.unlink(temp)
        text = path.read_text().strip()
    except OSError as exc:
        raise StorageError(f"could not make or read the URL secret {path}: {exc}") from exc
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise StorageError(f"{path} is not 64 hex digits; delete it to make a new one (older URLs stop working)")
    return bytes.fromhex(text)


def open_storage(settings: ServiceSettings, timeouts: Timeouts = PATIENT) -> Storage:
    """The store that `settings.storage_url` names: s3://BUCKET[/PREFIX] or file://FOLDER.

    timeouts: INTERACTIVE for the API (a request never waits long on hung storage), PATIENT for workers.
    """
    url = settings.storage_url
    if url.startswith("s3://"):
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if bucket:
            return S3Storage(
                bucket, prefix, settings.s3_endpoint_url, settings.s3_public_endpoint_url, timeouts=timeouts
            )
    elif url.startswith("file://") and url != "file://":
        root = Path(url.removeprefix("file://")).resolve()
        if settings.url_secret is not None:
            secret = settings.url_secret.get_secret_value().encode()
        else:
            secret = shared_secret(root)
        return LocalStorage(root, secret, settings.base_url)
    raise ValueError(
        f"PAINTS_UNDO_STORAGE_URL={url!r} is neither s3://BUCKET[/PREFIX] nor file://FOLDER "
        "(file://./data, file:///var/lib/paints-undo)"
    )
