"""What a request handler needs: the shared services, and the caller's identity from its bearer key."""

import hashlib
from dataclasses import dataclass
from typing import Annotated

import redis.asyncio
from celery import Celery
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.config import ApiSettings
from api.errors import ApiError
from jobs.notify import WebhookNotifier
from jobs.storage import LocalStorage, Storage
from jobs.store import JobStore


@dataclass(frozen=True)
class Services:
    settings: ApiSettings  # without its api_keys: only their hashes are kept (owners)
    owners: dict[str, str]  # owner id by SHA-256 of the key
    store: JobStore
    events_redis: redis.asyncio.Redis  # the SSE streams' blocking reads, shared by all of them
    storage: Storage
    celery: Celery
    notifier: WebhookNotifier

    @property
    def local_storage(self) -> LocalStorage | None:
        return self.storage if isinstance(self.storage, LocalStorage) else None


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]

bearer = HTTPBearer(auto_error=False, description="An API key from PAINTS_UNDO_API_KEYS.")


def current_owner(
    services: ServicesDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> str:
    """The owner id of the presented key; jobs of other keys are invisible to it."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise ApiError(401, "missing_api_key", "send the header Authorization: Bearer <API key>", challenge)
    owner = services.owners.get(hashlib.sha256(credentials.credentials.encode()).hexdigest())
    if owner is None:
        raise ApiError(401, "invalid_api_key", "the API key is not valid", challenge)
    return owner


OwnerDep = Annotated[str, Depends(current_owner)]
