"""Webhook building blocks: event names, Standard Webhooks signing, URL checks and one delivery attempt.

Pure functions without Celery or torch, so the API can validate a job's webhook with the same rules the
webhook worker delivers it with.
"""

import base64
import binascii
import hashlib
import hmac
import ipaddress
import random
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from jobs.errors import ErrorCode, InvalidRequest

WEBHOOK_EVENTS: tuple[str, ...] = ("job.started", "job.keyframe", "job.succeeded", "job.failed", "job.canceled")

SECRET_PREFIX = "whsec_"
# The Standard Webhooks spec asks for keys of 24 to 64 bytes; shorter ones are refused, longer ones are harmless.
MIN_SECRET_BYTES = 24
MAX_URL_LENGTH = 2048
USER_AGENT = "paints-undo-webhooks/1"
# Only the status matters; reading a little lets a receiver finish writing a short reply before we close.
MAX_RESPONSE_BYTES = 1024

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

# Credentials of the machine itself; refused even for allowed hosts, no webhook has a reason to go there.
METADATA_ADDRESSES: frozenset[Address] = frozenset(
    ipaddress.ip_address(text) for text in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
METADATA_HOSTS: frozenset[str] = frozenset(
    ("metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal")
)
SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT, RFC 6598
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
NAT64_LOCAL_PREFIX = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: site-local translation, always refused


class WebhookError(InvalidRequest):
    """A webhook URL, secret or event list that cannot be used (422 with its code)."""


def parse_events(value: str | None) -> tuple[str, ...]:
    """`job.started, job.failed` → the named events in order without duplicates; None or blank → all events."""
    if value is None or not value.strip():
        return WEBHOOK_EVENTS
    names = [name.strip() for name in value.split(",")]
    unknown = [name for name in names if name not in WEBHOOK_EVENTS]
    if unknown:
        raise WebhookError(
            ErrorCode.INVALID_WEBHOOK_EVENTS,
            f"unknown webhook events {unknown}; valid events are {', '.join(WEBHOOK_EVENTS)}",
        )
    return tuple(dict.fromkeys(names))


def parse_secret(secret: str) -> bytes:
    """`whsec_<base64>` → the HMAC key bytes."""
    if not secret.startswith(SECRET_PREFIX):
        raise WebhookError(ErrorCode.INVALID_WEBHOOK_SECRET, f"the webhook secret must start with {SECRET_PREFIX!r}")
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # Unpadded base64 is common in generated secrets, so padding is optional.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        message = "the webhook secret is not valid base64 after 'whsec_'"
        raise WebhookError(ErrorCode.INVALID_WEBHOOK_SECRET, message) from exc
    if len(key) < MIN_SECRET_BYTES:
        message = f"the webhook secret key has {len(key)} bytes; at least {MIN_SECRET_BYTES}"
        raise WebhookError(ErrorCode.INVALID_WEBHOOK_SECRET, message)
    return key


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`."""
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers for one JSON message."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, message_id, timestamp, body),
        "content-type": "application/json",
    }


@dataclass(frozen=True)
class WebhookTarget:
    """A checked webhook URL and the address a delivery connects to."""

    url: str
    scheme: str
    host: str  # lowercase, without brackets for IPv6
    port: int
    path: str  # with the query
    address: str  # the checked IP; deliveries connect here, never to a fresh DNS answer

    @property
    def host_header(self) -> str:
        """`host` or `host:port` (port only when not the scheme's default), IPv6 in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if self.scheme == "https" else 80
        return host if self.port == default_port else f"{host}:{self.port}"


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, 6to4 or NAT64 (64:ff9b::/96) IPv6 address, else None."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_forbidden_address(address: Address) -> bool:
    """True for addresses a webhook must not reach: this machine, private networks, metadata services."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            # Judge the IPv4 address the packets end up at; the wrapping prefixes are themselves "reserved".
            return is_forbidden_address(inner)
        if address.scope_id is not None or address in NAT64_LOCAL_PREFIX:
            return True
    # is_private also covers the documentation, benchmarking and other special-purpose ranges.
    return (
        address in METADATA_ADDRESSES
        or address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or (isinstance(address, ipaddress.IPv4Address) and address in SHARED_ADDRESS_SPACE)
    )


def check_target(url: str, allowed_hosts: Sequence[str] = (), resolve: Resolver = socket.getaddrinfo) -> WebhookTarget:
    """Validate a webhook URL and resolve its host once; raise WebhookError when it may not be called."""
    if len(url) > MAX_URL_LENGTH:
        raise WebhookError(ErrorCode.INVALID_WEBHOOK_URL, f"the webhook URL is longer than {MAX_URL_LENGTH} characters")
    if not url.isprintable() or " " in url:
        raise WebhookError(ErrorCode.INVALID_WEBHOOK_URL, "the webhook URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookError(ErrorCode.INVALID_WEBHOOK_URL, f"the webhook URL cannot be parsed: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise WebhookError(ErrorCode.INVALID_WEBHOOK_URL, "the webhook URL must start with http:// or https://")
    if "@" in parts.netloc:
        raise WebhookError(ErrorCode.INVALID_WEBHOOK_URL, "the webhook URL may not contain a user name or password")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise WebhookError(ErrorCode.INVALID_WEBHOOK_URL, "the webhook URL has no host")
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    if not 1 <= port <= 65535:
        raise WebhookError(ErrorCode.INVALID_WEBHOOK_URL, f"the webhook URL port {port} is out of range")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise WebhookError(ErrorCode.INVALID_WEBHOOK_URL, f"the webhook host {host!r} is not a valid name") from exc
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    if host in METADATA_HOSTS:
        raise WebhookError(ErrorCode.WEBHOOK_URL_FORBIDDEN, f"the webhook host {host!r} is a cloud metadata service")
    addresses = resolve_host(host, port, resolve)
    allowed = host in {name.strip().lower().rstrip(".") for name in allowed_hosts}
    for address in addresses:
        if address in METADATA_ADDRESSES or (not allowed and is_forbidden_address(address)):
            # Any bad address refuses the host: a resolver may hand the worker another answer than the API got.
            raise WebhookError(
                ErrorCode.WEBHOOK_URL_FORBIDDEN,
                f"the webhook host {host!r} resolves to {address}, a private, local or reserved address",
            )
    return WebhookTarget(url=url, scheme=parts.scheme, host=host, port=port, path=path, address=str(addresses[0]))


def resolve_host(host: str, port: int, resolve: Resolver) -> list[Address]:
    """All addresses of `host`, in the resolver's order without duplicates."""
    try:
        infos = resolve(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise WebhookError(ErrorCode.INVALID_WEBHOOK_URL, f"the webhook host {host!r} could not be resolved") from exc
    addresses: dict[Address, None] = {}
    for _family, _type, _proto, _canonname, sockaddr in infos:
        try:
            addresses[ipaddress.ip_address(sockaddr[0])] = None
        except ValueError:
            continue  # not IPv4/IPv6 (AF_UNIX and the like); never a place to connect to
    if not addresses:
        raise WebhookError(ErrorCode.INVALID_WEBHOOK_URL, f"the webhook host {host!r} could not be resolved")
    return list(addresses)


@dataclass(frozen=True)
class DeliveryResult:
    """One delivery attempt: the receiver's status, or an error when none came; `error` is None exactly when ok."""

    status_code: int | None
    error: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def deliver(target: WebhookTarget, body: bytes, headers: Mapping[str, str], timeout: float) -> DeliveryResult:
    """POST `body` once to the checked address of `target`; never follows redirects, never raises for network errors."""
    request_headers = {"user-agent": USER_AGENT, **headers, "host": target.host_header}
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        # Connect to the checked IP but verify the certificate (and send SNI) for the URL's host name.
        pool = urllib3.HTTPSConnectionPool(
            target.address,
            target.port,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    else:
        pool = urllib3.HTTPConnectionPool(target.address, target.port, maxsize=1)
    started = time.monotonic()
    try:
        with pool:
            response = pool.urlopen(
                "POST",
                target.path,
                body=body,
                headers=request_headers,
                redirect=False,
                retries=False,
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
                preload_content=False,
                assert_same_host=False,
            )
            try:
                response.read(MAX_RESPONSE_BYTES, decode_content=False)
            finally:
                response.close()
    except NewConnectionError as exc:
        # Checked before timeouts: urllib3 2 makes it a ConnectTimeoutError subclass, even for a refused connection.
        return DeliveryResult(None, short_error(exc), time.monotonic() - started)
    except Urllib3Timeout:
        return DeliveryResult(None, f"timed out after {timeout:g} s", time.monotonic() - started)
    except (Urllib3Error, OSError) as exc:
        return DeliveryResult(None, short_error(exc), time.monotonic() - started)
    seconds = time.monotonic() - started
    status = response.status
    if 200 <= status < 300:
        return DeliveryResult(status, None, seconds)
    if 300 <= status < 400:
        return DeliveryResult(status, f"HTTP {status}: redirects are not followed", seconds)
    return DeliveryResult(status, f"HTTP {status}", seconds)


def short_error(exc: BaseException) -> str:
    """The exception's type and message on one line, at most 300 characters."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300]


def backoff_seconds(attempt: int, base: float = 5.0, cap: float = 600.0, rng: random.Random | None = None) -> float:
    """Delay before retry `attempt` (1-based): exponential backoff with full jitter.

    Uniform in [0, min(cap, base * 2 ** (attempt - 1))]; the jitter spreads retries of many failed
    deliveries instead of hitting a recovering receiver all at once (AWS "Exponential Backoff And Jitter").
    """
    if attempt < 1:
        raise ValueError(f"attempt must be 1 or more, got {attempt}")
    # The exponent is clamped so huge attempt numbers cannot overflow a float.
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 64))
    return (rng or random.Random()).uniform(0.0, ceiling)
