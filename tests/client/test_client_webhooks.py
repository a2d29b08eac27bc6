"""verify_webhook against bodies and headers signed by the service's own signer (jobs/webhooks.py)."""

import base64
import json
import time

import pytest
from local_api import job_json
from paints_undo_client import Job, WebhookEvent, WebhookVerificationError, verify_webhook

from jobs.webhooks import parse_secret, signed_headers

SECRET = "whsec_" + base64.b64encode(b"local-webhook-secret-of-32-bytes").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-secret-of-thirty-two-byt").decode()
BODY = json.dumps({"type": "job.succeeded", "timestamp": "2026-11-30T10:03:10Z", "data": job_json()}).encode()


def signed(body: bytes = BODY, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    """Headers as the webhook worker sends them, names capitalised as a web framework may hand them over."""
    headers = signed_headers(parse_secret(secret), "msg_2q6v", int(time.time() if at is None else at), body)
    return {name.title(): value for name, value in headers.items()}


def test_a_signed_webhook_becomes_a_typed_event() -> None:
    event = verify_webhook(signed(), BODY, SECRET)
    assert isinstance(event, WebhookEvent) and isinstance(event.data, Job)
    assert (event.id, event.type, event.data.status) == ("msg_2q6v", "job.succeeded", "succeeded")
    assert event.timestamp.year == 2026 and event.data.metadata == {"artwork_id": "art_42"}
    assert verify_webhook(signed(), BODY.decode(), SECRET) == event  # the body as text works too


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (signed(), BODY.replace(b"succeeded", b"failed")),  # tampered
        (signed(secret=OTHER_SECRET), BODY),  # another server's secret
        (signed(at=time.time() - 3600), BODY),  # an old message, replayed
        ({**signed(), "Webhook-Signature": "not a signature"}, BODY),  # malformed
        ({name: value for name, value in signed().items() if name != "Webhook-Id"}, BODY),  # incomplete
    ],
    ids=["tampered", "other secret", "replayed", "malformed", "missing header"],
)
def test_anything_else_is_refused(headers: dict[str, str], body: bytes) -> None:
    with pytest.raises(WebhookVerificationError):
        verify_webhook(headers, body, SECRET)
