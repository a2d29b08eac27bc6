"""The API's settings: the shared service settings plus the API keys (environment, prefix PAINTS_UNDO_)."""

import hashlib

from pydantic import Field, field_validator

from jobs.settings import CommaList, ServiceSettings, split_commas


def key_owner(api_key: str) -> str:
    """The id jobs are filed under for a key: a hash, so the key itself is never stored."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:32]


class ApiSettings(ServiceSettings):
    api_keys: CommaList = Field(
        (),
        validate_default=True,
        description="Comma-separated bearer keys; each sees only its own jobs. Required.",
        repr=False,
    )

    max_header_bytes: int = Field(
        16 * 1024,
        ge=4096,
        description="Largest total size of a request's headers (names, values, 4 bytes each for ': ' and CRLF); "
        "larger ones answer 431. Run uvicorn with a larger h11 limit than this, so this limit is the one met.",
    )

    _split_keys = field_validator("api_keys", mode="before")(split_commas)

    @field_validator("api_keys")
    @classmethod
    def _require_keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        if not keys:
            raise ValueError("not set; give one or more comma-separated API keys (16+ characters each)")
        if short := [key for key in keys if len(key) < 16]:
            raise ValueError(f"{len(short)} API key(s) are shorter than 16 characters; use long random keys")
        return keys

    def owners(self) -> dict[str, str]:
        """owner id by the SHA-256 of each key: what the API keeps in memory instead of the keys."""
        return {hashlib.sha256(key.encode()).hexdigest(): key_owner(key) for key in self.api_keys}
