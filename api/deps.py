"""What a request handler needs: the shared services, and the caller's identity from its bearer key."""

import hashlib
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.config import ApiSettings
from jobs.errors import ErrorCode, Unauthorized
from jobs.events import EventReader
from jobs.service import JobService
from jobs.storage import LocalStorage


@dataclass(frozen=True)
class Services:
    settings: ApiSettings  # without its api_keys: only their hashes are kept (owners)
    owners: dict[str, str]  # owner id by SHA-256 of the key
    jobs: JobService
    events: EventReader  # the SSE streams' blocking reads, shared by all of them

    @property
    def local_storage(self) -> LocalStorage | None:
        storage = self.jobs.storage
        return storage if isinstance(storage, LocalStorage) else None


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]

bearer = HTTPBearer(auto_error=False, description="An API key from PAINTS_UNDO_API_KEYS.")


def current_owner(
    services: ServicesDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> str:
    """The owner id of the presented key; jobs of other keys are invisible to it."""
    if credentials is None:
        raise Unauthorized(ErrorCode.MISSING_API_KEY, "send the header Authorization: Bearer <API key>")
    owner = services.owners.get(hashlib.sha256(credentials.credentials.encode()).hexdigest())
    if owner is None:
        raise Unauthorized(ErrorCode.INVALID_API_KEY, "the API key is not valid")
    return owner


OwnerDep = Annotated[str, Depends(current_owner)]
