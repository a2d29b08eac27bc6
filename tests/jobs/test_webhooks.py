"""jobs.webhooks: signatures checked by the reference verifier, URL refusals, deliveries to a real local server."""

import base64
import ipaddress
import json
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from jobs.webhooks import (
    WEBHOOK_EVENTS,
    WebhookError,
    WebhookTarget,
    backoff_seconds,
    check_target,
    deliver,
    parse_events,
    parse_secret,
    sign,
    signed_headers,
)

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
BODY = json.dumps({"type": "job.succeeded", "data": {"id": "job_1"}}).encode()


def fake_resolver(table: dict[str, list[str]]) -> Callable[..., list[tuple[Any, ...]]]:
    """A getaddrinfo stand-in: names from `table`, IP literals as themselves, anything else unresolvable."""

    def resolve(host: str, port: int, *args: object, **kwargs: object) -> list[tuple[Any, ...]]:
        if host in table:
            addresses = table[host]
        else:
            try:
                addresses = [str(ipaddress.ip_address(host))]
            except ValueError:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses
        ]

    return resolve


def refusal_code(url: str, **kwargs: Any) -> str:
    with pytest.raises(WebhookError) as caught:
        check_target(url, **kwargs)
    return caught.value.code


# Signing.


def test_signature_verified_by_standardwebhooks() -> None:
    headers = signed_headers(KEY, "msg_1", int(time.time()), BODY)
    assert headers["content-type"] == "application/json"
    assert Webhook(SECRET).verify(BODY, headers) == json.loads(BODY)


@pytest.mark.parametrize("tamper", ["body", "timestamp", "id", "key"])
def test_tampered_message_refused_by_standardwebhooks(tamper: str) -> None:
    now = int(time.time())
    headers = signed_headers(b"another key of 24 bytes!" if tamper == "key" else KEY, "msg_1", now, BODY)
    body = BODY.replace(b"succeeded", b"failed") if tamper == "body" else BODY
    if tamper == "timestamp":
        headers["webhook-timestamp"] = str(now - 1)
    if tamper == "id":
        headers["webhook-id"] = "msg_2"
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, headers)


def test_sign_matches_the_standard_webhooks_example() -> None:
    key = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_parse_secret_accepts_padded_and_unpadded() -> None:
    assert parse_secret(SECRET) == KEY
    unpadded = "whsec_" + base64.b64encode(KEY[:25]).decode().rstrip("=")
    assert parse_secret(unpadded) == KEY[:25]


@pytest.mark.parametrize(
    "secret",
    [
        "",
        base64.b64encode(KEY).decode(),  # no prefix
        "WHSEC_" + base64.b64encode(KEY).decode(),
        "whsec_",
        "whsec_not base64 at all!!",
        "whsec_" + base64.b64encode(KEY).decode() + "$",
        "whsec_" + base64.b64encode(b"short key").decode(),
    ],
)
def test_parse_secret_refusals(secret: str) -> None:
    with pytest.raises(WebhookError) as caught:
        parse_secret(secret)
    assert caught.value.code == "invalid_webhook_secret"


# Event lists.


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, WEBHOOK_EVENTS),
        ("", WEBHOOK_EVENTS),
        ("  ", WEBHOOK_EVENTS),
        ("job.failed", ("job.failed",)),
        ("job.succeeded, job.started", ("job.succeeded", "job.started")),
        ("job.failed,job.canceled,job.failed", ("job.failed", "job.canceled")),
    ],
)
def test_parse_events(value: str | None, expected: tuple[str, ...]) -> None:
    assert parse_events(value) == expected


@pytest.mark.parametrize("value", ["job.done", "JOB.FAILED", "job.failed,,job.started", "job.failed,", "*"])
def test_parse_events_refuses_unknown_names(value: str) -> None:
    with pytest.raises(WebhookError) as caught:
        parse_events(value)
    assert caught.value.code == "invalid_webhook_events"
    assert "job.keyframe" in caught.value.message  # lists the valid names


# URL checks.

MIXED = fake_resolver(
    {
        "mixed.example": ["93.184.215.14", "10.0.0.7"],
        "mixed6.example": ["2606:2800:21f:cb07:6820:80da:af6b:8b2c", "fd12::1"],
        "public.example": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
        "metadata.google.internal": ["93.184.215.14"],  # refused by name, whatever it resolves to
        "receiver.test": ["10.1.2.3"],
        "meta.test": ["169.254.169.254"],
    }
)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.8.9.10:8000/",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.1.1/",
        "http://100.64.0.1/",
        "http://100.100.100.200/",
        "http://224.0.0.1/",
        "http://0.0.0.0/",
        "http://240.0.0.1/",
        "http://192.0.2.1/",  # documentation range
        "http://[::1]/",
        "http://[::]/",
        "http://[fe80::1]/",
        "http://[fd00:ec2::254]/",
        "http://[ff02::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[2002:a00:1::]/",  # 6to4 of 10.0.0.1
        "http://[64:ff9b::7f00:1]/",  # NAT64 of 127.0.0.1
        "http://[64:ff9b:1::808:808]/",  # local-use NAT64
        "https://mixed.example/hook",
        "https://mixed6.example/hook",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.google.internal./",
    ],
)
def test_check_target_refuses_private_and_special_addresses(url: str) -> None:
    assert refusal_code(url, resolve=MIXED) == "webhook_url_forbidden"


@pytest.mark.parametrize("url", ["http://2130706433/", "http://0x7f.1/", "http://127.1/"])
def test_check_target_refuses_numeric_spellings_of_loopback(url: str) -> None:
    # The real resolver parses these without DNS; the check sees what they resolve to, not how they are written.
    assert refusal_code(url) == "webhook_url_forbidden"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://public.example/",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "public.example/hook",
        "//public.example/hook",
        "http:///hook",
        "http://user:pass@public.example/",
        "http://user@public.example/",
        "http://public.example:99999/",
        "http://public.example:0/",
        "http://public.example:http/",
        "http://pub lic.example/",
        "http://public.example/\r\nX-Injected: 1",
        "http://public.example/" + "a" * 2048,
    ],
)
def test_check_target_refuses_malformed_urls(url: str) -> None:
    assert refusal_code(url, resolve=MIXED) == "invalid_webhook_url"


def test_check_target_unresolvable_host() -> None:
    with pytest.raises(WebhookError, match="could not be resolved") as caught:
        check_target("https://nowhere.example/", resolve=MIXED)
    assert caught.value.code == "invalid_webhook_url"


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("https://public.example/hooks/paints?token=abc#frag", "93.184.215.14"),
        ("http://8.8.8.8:8080/", "8.8.8.8"),
        ("http://[2606:4700:4700::1111]/", "2606:4700:4700::1111"),
        ("http://[::ffff:8.8.8.8]/", "::ffff:808:808"),
        ("http://[2002:808:808::1]/", "2002:808:808::1"),  # 6to4 of a public address
        ("http://[64:ff9b::808:808]/", "64:ff9b::808:808"),  # NAT64 of a public address
    ],
)
def test_check_target_accepts_public_addresses(url: str, address: str) -> None:
    assert check_target(url, resolve=MIXED).address == address


def test_check_target_fields() -> None:
    target = check_target("HTTPS://Public.Example/hooks/paints?token=abc#frag", resolve=MIXED)
    assert target == WebhookTarget(
        url="HTTPS://Public.Example/hooks/paints?token=abc#frag",
        scheme="https",
        host="public.example",
        port=443,
        path="/hooks/paints?token=abc",
        address="93.184.215.14",
    )
    assert target.host_header == "public.example"
    ipv6 = check_target("http://[2606:4700:4700::1111]:8080", resolve=MIXED)
    assert (ipv6.host, ipv6.path, ipv6.host_header) == ("2606:4700:4700::1111", "/", "[2606:4700:4700::1111]:8080")


def test_allowed_hosts_exempts_only_that_host() -> None:
    target = check_target("http://Receiver.TEST:8080/hook", allowed_hosts=("receiver.test",), resolve=MIXED)
    assert (target.host, target.port, target.address) == ("receiver.test", 8080, "10.1.2.3")
    assert refusal_code("http://receiver.test/hook", resolve=MIXED) == "webhook_url_forbidden"
    resolver = fake_resolver({"sub.receiver.test": ["10.1.2.3"]})
    assert refusal_code("http://sub.receiver.test/", allowed_hosts=("receiver.test",), resolve=resolver) == (
        "webhook_url_forbidden"
    )
    # The allowance is by name: a literal private address is not exempted by another host's entry.
    assert refusal_code("http://10.1.2.3/", allowed_hosts=("receiver.test",)) == "webhook_url_forbidden"


def test_allowed_hosts_never_reach_metadata_services() -> None:
    assert refusal_code("http://meta.test/", allowed_hosts=("meta.test",), resolve=MIXED) == "webhook_url_forbidden"
    metadata_url = "http://metadata.google.internal/"
    assert refusal_code(metadata_url, allowed_hosts=("metadata.google.internal",), resolve=MIXED) == (
        "webhook_url_forbidden"
    )


# Deliveries to a real server on 127.0.0.1.


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def target(self, path: str, host: str = "receiver.test", scheme: str = "http") -> WebhookTarget:
        """A target named `host` whose checked address is this server, as the API would build it."""
        resolver = fake_resolver({host: ["127.0.0.1"]})
        return check_target(f"{scheme}://{host}:{self.port}{path}", allowed_hosts=(host,), resolve=resolver)


class ReceiverHandler(BaseHTTPRequestHandler):
    """/redirect answers 302, /fail 500, /slow waits for the test to finish; anything else 204."""

    server: "ReceiverServer"

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        receiver.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if self.path == "/slow":
            receiver.release.wait(5)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("location", f"http://127.0.0.1:{receiver.port}/landing")
        elif self.path == "/fail":
            self.send_response(500)
        else:
            self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ReceiverServer(ThreadingHTTPServer):
    receiver: Receiver


def start_receiver(context: ssl.SSLContext | None = None) -> Receiver:
    server = ReceiverServer(("127.0.0.1", 0), ReceiverHandler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    receiver = Receiver(server)
    server.receiver = receiver
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver


def stop_receiver(receiver: Receiver) -> None:
    receiver.release.set()
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = start_receiver()
    yield started
    stop_receiver(started)


def test_deliver_sends_signed_body_to_the_checked_address(receiver: Receiver) -> None:
    target = receiver.target("/hook?job=1")
    headers = signed_headers(KEY, "msg_1", int(time.time()), BODY)
    result = deliver(target, BODY, headers, timeout=5)
    assert (result.ok, result.status_code, result.error) == (True, 204, None)
    assert result.seconds >= 0
    [request] = receiver.requests
    assert request.path == "/hook?job=1"
    assert request.body == BODY
    # The connection went to 127.0.0.1, yet the receiver sees the URL's host name.
    assert request.headers["host"] == f"receiver.test:{receiver.port}"
    Webhook(SECRET).verify(request.body, request.headers)


def test_deliver_does_not_follow_redirects(receiver: Receiver) -> None:
    result = deliver(receiver.target("/redirect"), BODY, {}, timeout=5)
    assert (result.ok, result.status_code) == (False, 302)
    assert result.error is not None
    assert [request.path for request in receiver.requests] == ["/redirect"]


def test_deliver_server_error_is_not_ok(receiver: Receiver) -> None:
    result = deliver(receiver.target("/fail"), BODY, {}, timeout=5)
    assert (result.ok, result.status_code, result.error) == (False, 500, "HTTP 500")


def test_deliver_closed_port_gives_an_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = WebhookTarget(f"http://receiver.test:{port}/", "http", "receiver.test", port, "/", "127.0.0.1")
    result = deliver(target, BODY, {}, timeout=5)
    assert (result.ok, result.status_code) == (False, None)
    assert result.error is not None and "refused" in result.error.lower()
    assert "timed out" not in result.error


def test_deliver_times_out_on_a_slow_receiver(receiver: Receiver) -> None:
    result = deliver(receiver.target("/slow"), BODY, {}, timeout=0.3)
    assert (result.ok, result.status_code) == (False, None)
    assert result.error is not None and "timed out" in result.error
    assert 0.25 <= result.seconds < 2


# HTTPS: connect to the checked address, verify the certificate for the URL's host name.


# Self-signed for receiver.test (and its own CA), valid 2025 to 2125; a test-only key, generated once.
RECEIVER_CERT = """-----BEGIN CERTIFICATE-----
MIIBYDCCAQegAwIBAgIUEXbs2zzP0ZGFtGmFxtqrbJMWC+0wCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNcmVjZWl2ZXIudGVzdDAgFw0yNTAxMDEwMDAwMDBaGA8yMTI1
MDEwMTAwMDAwMFowGDEWMBQGA1UEAwwNcmVjZWl2ZXIudGVzdDBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABLxkkVHFMSAUinzMsIbPRn2eQ1JubcRa6AJHp+tKRfQ4
LZZeUKh3BxHE11X9WOlF+Y9rPFnIzQAlPvKVmaYzO8+jLTArMBgGA1UdEQQRMA+C
DXJlY2VpdmVyLnRlc3QwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBE
AiA85IR6JtIvZ+SATbgJrIgTV+PFsWUfHmRciB89ShJMPwIgFzxi37MpCVbUhpVo
i9zs/eewP++WiJM0SAnoJiDSvww=
-----END CERTIFICATE-----
"""
RECEIVER_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg9ez4A8+5mo6av9us
IEt4vx1XAkmwdvpBsWiot7tKyPGhRANCAAS8ZJFRxTEgFIp8zLCGz0Z9nkNSbm3E
WugCR6frSkX0OC2WXlCodwcRxNdV/VjpRfmPazxZyM0AJT7ylZmmMzvP
-----END PRIVATE KEY-----
"""


@pytest.fixture
def tls_receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_text(RECEIVER_CERT)
    key_path.write_text(RECEIVER_KEY)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    # OpenSSL reads the default trust store from here when urllib3 loads the system certificates.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))
    started = start_receiver(context)
    yield started
    stop_receiver(started)


def test_deliver_https_checks_the_certificate_against_the_host_name(tls_receiver: Receiver) -> None:
    result = deliver(tls_receiver.target("/hook", scheme="https"), BODY, {}, timeout=5)
    assert (result.ok, result.status_code) == (True, 204)
    assert tls_receiver.requests[0].headers["host"] == f"receiver.test:{tls_receiver.port}"


def test_deliver_https_refuses_a_certificate_for_another_name(tls_receiver: Receiver) -> None:
    result = deliver(tls_receiver.target("/hook", host="other.test", scheme="https"), BODY, {}, timeout=5)
    assert (result.ok, result.status_code) == (False, None)
    assert result.error is not None
    assert tls_receiver.requests == []


# Retry delays.


def test_backoff_seconds_bounds() -> None:
    rng = random.Random(0)
    for attempt, ceiling in [(1, 5.0), (2, 10.0), (3, 20.0), (7, 320.0), (8, 600.0), (50, 600.0), (10_000, 600.0)]:
        delays = [backoff_seconds(attempt, rng=rng) for _ in range(200)]
        assert all(0.0 <= delay <= ceiling for delay in delays)
        assert max(delays) > 0.8 * ceiling  # full jitter spreads over the whole range
    assert backoff_seconds(3, base=1.0, cap=2.5, rng=random.Random(1)) <= 2.5


def test_backoff_seconds_is_reproducible_with_a_seed() -> None:
    first = [backoff_seconds(n, rng=random.Random(42)) for n in range(1, 6)]
    assert first == [backoff_seconds(n, rng=random.Random(42)) for n in range(1, 6)]


def test_backoff_seconds_refuses_attempt_zero() -> None:
    with pytest.raises(ValueError):
        backoff_seconds(0)
