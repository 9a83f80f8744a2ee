"""Webhooks to a local http.server, e-mail to a local aiosmtpd, and the notifier resource."""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.core.errors import ConfigurationError
from aiosmtpd.controller import Controller

from pipeline.core.distribution import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    deliver_webhook,
    payload_bytes,
    public_target,
    send_email,
    sign,
    verify,
    webhook_payload,
)
from pipeline.core.summary import Link
from resources.notifier import NotifierResource
from tests.core.test_summary import make_summary

SECRET = "s3cr3t-hmac-key-do-not-log"
LINKS = {
    "report.pdf": Link(url="http://store.local/reports/b/report.pdf?X-Amz-Signature=abc",
                       expires_at="2026-06-21T11:00:00Z"),
    "summary.json": Link(url="http://store.local/reports/b/summary.json?X-Amz-Signature=def"),
}


@dataclass
class Hook:
    statuses: list[int]  # status per request; the last one repeats
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook(statuses=[200])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append((dict(self.headers), body))
            status = state.statuses[min(len(state.requests), len(state.statuses)) - 1]
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/imagery?token=querysecret"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@dataclass
class Inbox:
    messages: list[tuple[str, list[str], str]] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode()))
        return "250 OK"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp() -> Iterator[tuple[Controller, Inbox]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


def _deliver(hook: Hook, **kwargs: object):
    body = payload_bytes(webhook_payload(make_summary(), LINKS))
    return body, deliver_webhook(hook.url, body, secret=SECRET, timeout_s=5, backoff_s=0.01, **kwargs)


def test_sign__documented_scheme() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"1700000000." + b'{"a":1}', hashlib.sha256).hexdigest()
    assert sign(b'{"a":1}', SECRET, timestamp=1700000000) == expected
    assert sign(b'{"a":1}', SECRET, timestamp=1700000001) != expected  # timestamp is signed


def test_deliver_webhook__payload_and_valid_signature(hook: Hook) -> None:
    body, result = _deliver(hook, retries=0)
    assert result.outcome == "delivered" and result.attempts == 1 and result.status_code == 200
    headers, received = hook.requests[0]
    assert received == body
    payload = json.loads(received)
    assert payload["batch_id"] == "farm7-north-2026-06-14"
    assert payload["headline"]["ndvi_mean"] == pytest.approx(0.52)
    assert payload["headline"]["ndvi_classes"] == {"bare": 0.1, "stressed": 0.2, "moderate": 0.3, "healthy": 0.4}
    assert payload["headline"]["hotspot_area_m2"] == pytest.approx(1.25)
    assert payload["links"]["report.pdf"]["url"].endswith("X-Amz-Signature=abc")
    assert verify(received, SECRET, timestamp=headers[TIMESTAMP_HEADER], signature=headers[SIGNATURE_HEADER],
                  now=time.time())
    assert not verify(received + b" ", SECRET, timestamp=headers[TIMESTAMP_HEADER],
                      signature=headers[SIGNATURE_HEADER], now=time.time())
    assert not verify(received, SECRET, timestamp=headers[TIMESTAMP_HEADER],
                      signature=headers[SIGNATURE_HEADER], now=time.time() + 3600)  # replayed later


def test_deliver_webhook__retries_after_one_500(hook: Hook) -> None:
    hook.statuses = [500, 200]
    _, result = _deliver(hook, retries=3)
    assert (result.outcome, result.attempts, result.status_code) == ("delivered", 2, 200)
    assert len(hook.requests) == 2


def test_deliver_webhook__repeated_500_recorded_not_raised(hook: Hook) -> None:
    hook.statuses = [503]
    _, result = _deliver(hook, retries=2)
    assert (result.outcome, result.attempts, result.status_code) == ("failed", 3, 503)
    assert len(hook.requests) == 3
    assert "503" in result.error
    assert result.target == public_target(hook.url) and "querysecret" not in result.target
    assert SECRET not in result.model_dump_json() and "querysecret" not in result.model_dump_json()


def test_deliver_webhook__4xx_not_retried(hook: Hook) -> None:
    hook.statuses = [404, 200]
    _, result = _deliver(hook, retries=3)
    assert (result.outcome, result.attempts, result.status_code) == ("failed", 1, 404)
    assert len(hook.requests) == 1


def test_deliver_webhook__connection_refused_recorded(hook: Hook) -> None:
    port = _free_port()  # closed again: nothing listens there
    result = deliver_webhook(f"http://user:pw@127.0.0.1:{port}/x?k={SECRET}", b"{}", secret=SECRET,
                             timeout_s=2, retries=1, backoff_s=0.01)
    assert (result.outcome, result.attempts, result.status_code) == ("failed", 2, None)
    assert result.target == f"http://127.0.0.1:{port}/x"
    assert SECRET not in (result.error or "") and "pw" not in result.target


def test_public_target__strips_credentials_and_query() -> None:
    assert public_target("https://u:p@hooks.example:8443/a/b?sig=1#f") == "https://hooks.example:8443/a/b"


def test_send_email__received_with_links(smtp: tuple[Controller, Inbox]) -> None:
    controller, inbox = smtp
    from pipeline.core.distribution import email_text

    result = send_email(host="127.0.0.1", port=controller.port, sender="pipeline@farm.example",
                        recipients=["agronomist@farm.example", "ops@farm.example"], subject="Report ready",
                        body_text=email_text(make_summary(), LINKS), starttls=False, username=None,
                        password=None, timeout_s=5)
    assert result.outcome == "delivered" and result.channel == "email"
    (sender, rcpts, content), = inbox.messages
    assert sender == "pipeline@farm.example"
    assert rcpts == ["agronomist@farm.example", "ops@farm.example"]
    message = email.message_from_string(content, policy=email.policy.default)
    assert message["Subject"] == "Report ready"
    text = message.get_content()
    assert LINKS["report.pdf"].url in text and LINKS["summary.json"].url in text
    assert "Mean NDVI: 0.520" in text and "healthy: 40.0 %" in text


def test_send_email__unreachable_server_recorded() -> None:
    port = _free_port()
    result = send_email(host="127.0.0.1", port=port, sender="a@b", recipients=["c@d"], subject="s",
                        body_text="t", starttls=False, username="u", password="pw-very-secret", timeout_s=2)
    assert result.outcome == "failed" and "pw-very-secret" not in (result.error or "")


def test_notifier_resource__distributes_to_all_channels(hook: Hook, smtp: tuple[Controller, Inbox]) -> None:
    controller, inbox = smtp
    notifier = NotifierResource(webhook_urls=f" {hook.url} ,", webhook_secret=SECRET, smtp_host="127.0.0.1",
                                smtp_port=controller.port, smtp_from="p@farm.example", smtp_to="a@farm.example",
                                backoff_s=0.01)
    record = notifier.distribute(make_summary(), LINKS)
    assert [(n.channel, n.outcome) for n in record.notifications] == [("webhook", "delivered"),
                                                                      ("email", "delivered")]
    assert record.links == LINKS and record.batch_id == "farm7-north-2026-06-14"
    assert len(hook.requests) == 1 and len(inbox.messages) == 1
    assert SECRET not in record.to_json().decode()


def test_notifier_resource__from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"WEBHOOK_URLS": "https://a.example/h,https://b.example/h", "WEBHOOK_SECRET": "k",
           "SMTP_HOST": "mail", "SMTP_PORT": "2525", "SMTP_FROM": "p@x", "SMTP_TO": "a@x, b@x",
           "SMTP_STARTTLS": "true"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LINK_EXPIRY_S", raising=False)
    notifier = NotifierResource.from_env().process_config_and_initialize()  # resolves the EnvVars
    settings = notifier.smtp_settings()
    assert settings is not None
    assert (settings.port, settings.recipients, settings.starttls) == (2525, ("a@x", "b@x"), True)
    assert notifier.link_expiry_s == 7 * 24 * 3600


def test_notifier_resource__nothing_configured_notifies_nobody() -> None:
    record = NotifierResource().distribute(make_summary(), LINKS)
    assert record.notifications == []
    with pytest.raises(ConfigurationError, match="WEBHOOK_SECRET"):
        NotifierResource(webhook_urls="https://a.example/h").distribute(make_summary(), LINKS)
