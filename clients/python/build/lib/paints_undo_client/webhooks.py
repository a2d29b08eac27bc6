"""Verifying the webhooks the service sends (Standard Webhooks: HMAC-SHA256 over id, timestamp and body)."""

from collections.abc import Mapping

from standardwebhooks.webhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError as SignatureError

from paints_undo_client.errors import WebhookVerificationError
from paints_undo_client.models import WebhookEvent


def verify_webhook(headers: Mapping[str, str], body: bytes | str, secret: str) -> WebhookEvent:
    """The webhook as a typed event, once its signature checks out against `secret` (the server's
    PAINTS_UNDO_WEBHOOK_SECRET, `whsec_...`); WebhookVerificationError otherwise.

    `body` must be the request's raw bytes, before any JSON parsing. Messages signed more than 5 minutes away
    from now are refused (replays). A retried delivery has the same `id`: deduplicate by it.
    """
    verifier = Webhook(secret)
    headers = {name.lower(): value for name, value in headers.items()}
    try:
        verified = verifier.verify(body, headers)
    except (SignatureError, ValueError) as err:  # ValueError: a malformed signature header, or body
        raise WebhookVerificationError(f"not a valid webhook: {err}") from err
    return WebhookEvent.from_json(headers["webhook-id"], verified)
