"""The service's settings, read from the environment in this one place (prefix PAINTS_UNDO_).

`ServiceSettings` is what the core, the workers and the scheduler need; the API extends it with its
keys (`api.config.ApiSettings`). Torch-free, like all of jobs/.
"""

import tempfile
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[tuple[str, ...], NoDecode]


def split_commas(value: object) -> object:
    """`a, b,c` → ("a", "b", "c"); empty items are dropped."""
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAINTS_UNDO_", frozen=True, extra="ignore")

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Job records, events and the Celery broker.")
    redis_prefix: str = Field(
        "pu:",
        pattern=r"^[A-Za-z0-9_.:-]{1,32}$",
        description="Every Redis key of this service (job records and Celery's queues) starts with it: give each "
        "service sharing one Redis its own.",
    )
    storage_url: str = Field(
        "file://./data",
        description="Where inputs and results go: s3://bucket/prefix, or file://FOLDER for one machine.",
    )
    s3_endpoint_url: str | None = Field(None, description="An S3-compatible server (MinIO); None means AWS.")
    s3_public_endpoint_url: str | None = Field(
        None, description="The same server as clients reach it, for presigned URLs; default s3_endpoint_url."
    )
    url_expiry_seconds: int = Field(3600, ge=60, le=7 * 86400, description="Lifetime of a result URL.")
    url_secret: SecretStr | None = Field(
        None,
        description="Signs file:// storage URLs; None keeps a generated one in the storage folder (one machine).",
    )
    port: int = Field(8000, ge=1, le=65535, validation_alias=AliasChoices("PORT", "PAINTS_UNDO_PORT"))
    public_url: str | None = Field(
        None, description="Base URL clients reach the API at (file:// storage URLs); default http://127.0.0.1:PORT."
    )
    retention_seconds: int = Field(7 * 86400, ge=1, description="A finished job's files and record are then deleted.")
    sweep_interval_seconds: float = Field(60, gt=0, description="How often the scheduler has expired jobs deleted.")
    schedule_file: Path = Field(
        Path(tempfile.gettempdir()) / "paints-undo-beat-schedule",
        description="The scheduler's (Celery beat's) record of when each periodic task last ran.",
    )

    # Submissions (jobs.service).
    max_upload_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="Largest accepted image file (the picture, and each keyframe)."
    )
    max_request_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Largest accepted submission: the picture and its supplied keyframes together.",
    )
    max_pixels: int = Field(
        40_000_000, ge=4096, description="Largest accepted width x height, checked before decoding."
    )
    max_active_jobs: int = Field(4, ge=1, description="Queued plus running jobs per API key.")

    webhook_secret: SecretStr | None = Field(None, description="whsec_<base64>; webhooks are refused without it.")
    webhook_allowed_hosts: CommaList = Field((), description="Hosts exempt from the private-network refusal.")
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=60, description="Per delivery attempt.")
    webhook_retry_seconds: int = Field(3600, ge=0, description="Retries of a failed delivery stop after this long.")
    webhook_backoff_seconds: float = Field(
        5.0, gt=0, description="Largest delay before the first retry; doubles each retry (full jitter, 10 min cap)."
    )

    model: str = Field(
        "lllyasviel",
        description="`tiny` (random weights, tests and demos), a folder, or the Hugging Face owner of the repos.",
    )
    tagger: str | None = Field(
        None, description="Tagger repo id when `model` is an owner; None is the published WD14 moat tagger."
    )
    model_cache: Path | None = Field(None, description="Hugging Face cache folder; `tiny` writes its files here.")
    device: str = "auto"
    dtype: str = "auto"
    low_memory: bool = Field(
        False, description="Keep weights in CPU memory between stages and sample clips one at a time (12 GB cards)."
    )
    compile: bool = Field(False, description="torch.compile both UNets; the first jobs of each shape pay minutes.")

    c2pa_cert: Path | None = Field(
        None,
        description="PEM certificate chain (signing certificate first) for Content Credentials; with c2pa_key, "
        "every video, preview and keyframe a render worker writes carries a signed C2PA manifest.",
    )
    c2pa_key: Path | None = Field(None, description="The PEM private key of c2pa_cert.")

    job_soft_time_limit: int = Field(3600, ge=10, description="A job still running then fails with code `timeout`.")
    job_time_limit: int = Field(3900, ge=20, description="The worker process is killed then.")
    visibility_timeout: int = Field(
        7200, ge=30, description="An unacknowledged job is redelivered after this (a worker host that vanished)."
    )
    max_attempts: int = Field(3, ge=1, le=10, description="A job whose worker died this many times fails.")
    lease_seconds: float = Field(
        60, ge=5, description="A running job whose worker has not renewed its lease for this long is reaped."
    )
    reap_interval_seconds: float = Field(
        15, gt=0, description="How often the reaper looks for jobs of dead workers and messages never sent."
    )

    _split_hosts = field_validator("webhook_allowed_hosts", mode="before")(split_commas)

    @model_validator(mode="after")
    def _hard_limit_after_soft(self) -> "ServiceSettings":
        # Celery arms the hard limit only once the soft one has passed: a hard limit at or below the soft one
        # would never fire before it.
        if self.job_time_limit <= self.job_soft_time_limit:
            raise ValueError(
                f"PAINTS_UNDO_JOB_TIME_LIMIT ({self.job_time_limit}) must be above PAINTS_UNDO_JOB_SOFT_TIME_LIMIT "
                f"({self.job_soft_time_limit})"
            )
        return self

    @model_validator(mode="after")
    def _request_holds_an_upload(self) -> "ServiceSettings":
        if self.max_request_bytes < self.max_upload_bytes:
            raise ValueError(
                f"PAINTS_UNDO_MAX_REQUEST_BYTES ({self.max_request_bytes}) must be at least "
                f"PAINTS_UNDO_MAX_UPLOAD_BYTES ({self.max_upload_bytes})"
            )
        return self

    @model_validator(mode="after")
    def _c2pa_cert_and_key_together(self) -> "ServiceSettings":
        if (self.c2pa_cert is None) != (self.c2pa_key is None):
            raise ValueError("set both PAINTS_UNDO_C2PA_CERT and PAINTS_UNDO_C2PA_KEY (PEM files), or neither")
        return self

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://127.0.0.1:{self.port}").rstrip("/")
