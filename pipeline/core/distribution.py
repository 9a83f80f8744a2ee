"""Distribution of a finished report: signed webhooks and e-mail, recorded in distribution.json.

Who is notified is server configuration (the notifier resource), never manifest content.

Webhook signing scheme (receivers verify it like this):

    timestamp = request header "X-Imagery-Timestamp"       # Unix seconds, decimal ASCII
    signed    = timestamp.encode("ascii") + b"." + raw_request_body
    expected  = hex(HMAC-SHA256(key=secret.encode("utf-8"), msg=signed))
    header "X-Imagery-Signature" == "sha256=" + expected   # compare with hmac.compare_digest

and reject a timestamp more than a few minutes away from their clock (replay protection: an old
body cannot be re-sent with a new timestamp without the secret). Each retry is signed afresh.

Delivery never raises: every failure becomes a `NotificationResult` with outcome "failed". No secret
(webhook secret, SMTP password, URL credentials or query string) appears in a result or a log line;
targets are recorded as scheme://host/path only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from urllib.parse import urlsplit, urlunsplit

from pipeline.core.summary import DistributionRecord, Link, NotificationResult, Summary

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Imagery-Signature"
TIMESTAMP_HEADER = "X-Imagery-Timestamp"
EVENT = "imagery.report.ready"


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    starttls: bool = False
    username: str | None = None
    password: str | None = None


def sign(body: bytes, secret: str, *, timestamp: int) -> str:
    """Hex HMAC-SHA256 of b"<timestamp>." + body (see the module docstring for the scheme)."""
    signed = str(int(timestamp)).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def signature_headers(body: bytes, secret: str, *, timestamp: int) -> dict[str, str]:
    """The two headers a signed webhook request carries."""
    return {TIMESTAMP_HEADER: str(int(timestamp)), SIGNATURE_HEADER: f"sha256={sign(body, secret, timestamp=timestamp)}"}


def verify(body: bytes, secret: str, *, timestamp: str, signature: str, now: float, tolerance_s: float = 300) -> bool:
    """Receiver side of the scheme: signature matches and the timestamp is within `tolerance_s`."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(signature, f"sha256={sign(body, secret, timestamp=int(timestamp))}")


def public_target(url: str) -> str:
    """The URL without credentials, query or fragment: safe to record and log."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _redact(text: str, secrets: Sequence[str | None]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _headline(summary: Summary) -> dict[str, object]:
    ndvi = summary.indices.get("ndvi")
    return {
        "ndvi_mean": ndvi.mean if ndvi else None,
        "ndvi_classes": {c.name: c.fraction for c in ndvi.classes} if ndvi else {},
        "hotspot_area_m2": summary.thermal.hotspot_area_m2 if summary.thermal else None,
        "indices": sorted(summary.indices),
        "zones": len(summary.zones),
    }


def webhook_payload(summary: Summary, links: Mapping[str, Link]) -> dict[str, object]:
    """JSON body of the webhook: event, batch id, headline figures and the (expiring) links."""
    return {
        "event": EVENT,
        "schema_version": 1,
        "batch_id": summary.batch_id,
        "generated_at": summary.model_dump(mode="json")["generated_at"],
        "headline": _headline(summary),
        "links": {name: link.model_dump(mode="json") for name, link in links.items()},
    }


def payload_bytes(payload: Mapping[str, object]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201
        return None  # a redirect is an answer (3xx), not something to follow with a signed body


_OPENER = urllib.request.build_opener(_NoRedirect)


def deliver_webhook(
    url: str,
    body: bytes,
    *,
    secret: str,
    timeout_s: float = 10.0,
    retries: int = 3,
    backoff_s: float = 1.0,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> NotificationResult:
    """POST `body` (JSON) signed with `secret`; retry 5xx, timeouts and connection errors up to
    `retries` times with exponential backoff (backoff_s, 2×, 4× …); never retry 4xx/3xx; never raise."""
    target = public_target(url)
    attempted_at = datetime.now(UTC)
    attempts, status, error = 0, None, None
    while True:
        attempts += 1
        headers = {"Content-Type": "application/json", "User-Agent": "imagery-pipeline",
                   **signature_headers(body, secret, timestamp=int(clock()))}
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        retryable = True
        try:
            with _OPENER.open(request, timeout=timeout_s) as response:
                status, error = response.status, None
            if 200 <= status < 300:
                log.info("webhook %s delivered (HTTP %s, attempt %d)", target, status, attempts)
                return NotificationResult(channel="webhook", target=target, attempted_at=attempted_at,
                                          outcome="delivered", attempts=attempts, status_code=status)
            error, retryable = f"HTTP {status}", False
        except urllib.error.HTTPError as exc:
            status, error, retryable = exc.code, f"HTTP {exc.code} {exc.reason}", exc.code >= 500
        except (urllib.error.URLError, TimeoutError, socket.timeout, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            status, error = None, f"{type(exc).__name__}: {reason}"
        except ValueError as exc:  # malformed URL
            status, error, retryable = None, f"invalid URL: {exc}", False
        error = _redact(error, [secret, url, urlsplit(url).query, urlsplit(url).password])
        log.warning("webhook %s attempt %d failed: %s", target, attempts, error)
        if not retryable or attempts > retries:
            break
        sleep(backoff_s * 2 ** (attempts - 1))
    return NotificationResult(channel="webhook", target=target, attempted_at=attempted_at, outcome="failed",
                              attempts=attempts, status_code=status, error=error)


def send_email(
    *,
    host: str,
    port: int,
    sender: str,
    recipients: Sequence[str],
    subject: str,
    body_text: str,
    starttls: bool = False,
    username: str | None = None,
    password: str | None = None,
    timeout_s: float = 30.0,
) -> NotificationResult:
    """One plain-text message to all `recipients` over SMTP; one attempt; never raises."""
    target = ", ".join(recipients)
    attempted_at = datetime.now(UTC)
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, target, subject
    message.set_content(body_text)
    try:
        with smtplib.SMTP(host, port, timeout=timeout_s) as smtp:
            if starttls:
                smtp.starttls()
            if username:
                smtp.login(username, password or "")
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        error = _redact(f"{type(exc).__name__}: {exc}", [password])
        log.warning("e-mail to %s via %s:%s failed: %s", target, host, port, error)
        return NotificationResult(channel="email", target=target, attempted_at=attempted_at,
                                  outcome="failed", attempts=1, error=error)
    log.info("e-mail to %s sent via %s:%s", target, host, port)
    return NotificationResult(channel="email", target=target, attempted_at=attempted_at,
                              outcome="delivered", attempts=1)


def email_text(summary: Summary, links: Mapping[str, Link]) -> str:
    """Plain-text body: headline figures and every link with its expiry."""
    head = _headline(summary)
    lines = [f"The imagery report for batch {summary.batch_id} is ready.", ""]
    if head["ndvi_mean"] is not None:
        lines.append(f"Mean NDVI: {head['ndvi_mean']:.3f}")
    for name, fraction in head["ndvi_classes"].items():  # type: ignore[union-attr]
        if fraction is not None:
            lines.append(f"  {name}: {fraction * 100:.1f} %")
    if head["hotspot_area_m2"] is not None:
        lines.append(f"Thermal hotspot area: {head['hotspot_area_m2']:.1f} m²")
    lines += ["", "Links:"]
    for name, link in links.items():
        expiry = link.model_dump(mode="json")["expires_at"]
        lines.append(f"  {name}: {link.url}" + (f"  (expires {expiry})" if expiry else ""))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """How hard a channel tries: per attempt timeout, attempts after the first, backoff base."""

    timeout_s: float = 10.0
    retries: int = 3
    backoff_s: float = 1.0


@dataclass(frozen=True, kw_only=True)
class WebhookChannel:
    """HMAC-signed JSON POSTs to server-configured URLs (scheme above)."""

    urls: tuple[str, ...]
    secret: str

    def notify(self, summary: Summary, links: Mapping[str, Link], delivery: Delivery,
               ) -> list[NotificationResult]:
        body = payload_bytes(webhook_payload(summary, links))
        return [deliver_webhook(url, body, secret=self.secret, timeout_s=delivery.timeout_s,
                                retries=delivery.retries, backoff_s=delivery.backoff_s)
                for url in self.urls]


@dataclass(frozen=True, kw_only=True)
class EmailChannel:
    """One plain-text e-mail with the links to the recipients."""

    smtp: SmtpSettings

    def notify(self, summary: Summary, links: Mapping[str, Link], delivery: Delivery,
               ) -> list[NotificationResult]:
        s = self.smtp
        return [send_email(
            host=s.host, port=s.port, sender=s.sender, recipients=s.recipients,
            subject=f"Imagery report ready: {summary.batch_id}", body_text=email_text(summary, links),
            starttls=s.starttls, username=s.username, password=s.password,
            timeout_s=delivery.timeout_s)]


Channel = WebhookChannel | EmailChannel  # a new channel: a class with `notify`, added here


def distribute(*, summary: Summary, links: Mapping[str, Link], channels: Sequence[Channel],
               delivery: Delivery = Delivery()) -> DistributionRecord:
    """Notify every channel once; the record lists each outcome (failures included)."""
    results = [r for channel in channels for r in channel.notify(summary, links, delivery)]
    return DistributionRecord(batch_id=summary.batch_id, generated_at=datetime.now(UTC),
                              links=dict(links), notifications=results)
