"""Who is told that a report is ready: webhooks and e-mail, from server configuration only.

Never from the manifest: an uploader must not be able to make the pipeline call arbitrary URLs
(DESIGN.md §2). The settings (`pipeline.settings.Settings`: WEBHOOK_URLS, WEBHOOK_SECRET,
SMTP_HOST/PORT/FROM/TO/USER/PASSWORD/STARTTLS, LINK_EXPIRY_S) are checked when the code location
loads; the resource's fields are `EnvVar`s for the variables that are set, so secrets stay out
of the Dagster UI. A channel is one function in `pipeline/core/distribution.py` plus its fields.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from pipeline.core.distribution import (
    Channel,
    Delivery,
    EmailChannel,
    SmtpSettings,
    WebhookChannel,
    distribute,
)
from pipeline.core.errors import ConfigurationError
from pipeline.settings import Settings
from pipeline.core.summary import DistributionRecord, Link, Summary

SEVEN_DAYS_S = 7 * 24 * 3600
_ENV = {
    "webhook_urls": "WEBHOOK_URLS", "webhook_secret": "WEBHOOK_SECRET", "smtp_host": "SMTP_HOST",
    "smtp_port": "SMTP_PORT", "smtp_from": "SMTP_FROM", "smtp_to": "SMTP_TO", "smtp_user": "SMTP_USER",
    "smtp_password": "SMTP_PASSWORD", "smtp_starttls": "SMTP_STARTTLS", "link_expiry_s": "LINK_EXPIRY_S",
}
_INT_FIELDS = {"smtp_port", "link_expiry_s"}


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


class NotifierResource(dg.ConfigurableResource):
    webhook_urls: str = ""  # comma-separated
    webhook_secret: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = ""
    smtp_to: str = ""  # comma-separated
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: str = "false"
    link_expiry_s: int = SEVEN_DAYS_S
    timeout_s: float = 10.0
    retries: int = 3
    backoff_s: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> NotifierResource:
        """A resource whose fields are `EnvVar`s for every variable `settings` has set (checked
        there), defaults otherwise."""
        given = {
            "webhook_urls": settings.webhook_urls, "webhook_secret": settings.webhook_secret,
            "smtp_host": settings.smtp_host, "smtp_port": settings.smtp_port != 25,
            "smtp_from": settings.smtp_from, "smtp_to": settings.smtp_to,
            "smtp_user": settings.smtp_user, "smtp_password": settings.smtp_password,
            "smtp_starttls": settings.smtp_starttls,
            "link_expiry_s": settings.link_expiry_s != SEVEN_DAYS_S,
        }
        fields = {field: dg.EnvVar.int(_ENV[field]) if field in _INT_FIELDS else dg.EnvVar(_ENV[field])
                  for field, value in given.items() if value}
        return cls(**fields)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NotifierResource:
        """`from_settings` of the environment as it is now."""
        return cls.from_settings(Settings.from_env(environ))

    def smtp_settings(self) -> SmtpSettings | None:
        recipients = _split(self.smtp_to)
        if not (self.smtp_host and recipients):
            return None
        if not self.smtp_from:
            raise ConfigurationError("is not set; set the sender address to enable e-mail (or unset "
                                     "SMTP_TO)", setting="SMTP_FROM")
        return SmtpSettings(
            host=self.smtp_host, port=self.smtp_port, sender=self.smtp_from, recipients=recipients,
            starttls=self.smtp_starttls.strip().lower() in {"1", "true", "yes", "on"},
            username=self.smtp_user or None, password=self.smtp_password or None,
        )

    def channels(self) -> list[Channel]:
        """The configured channels: one entry each (a new channel is a line here)."""
        channels: list[Channel] = []
        if urls := _split(self.webhook_urls):
            if not self.webhook_secret:
                raise ConfigurationError("is set but WEBHOOK_SECRET is not; receivers could not "
                                         "verify the signature. Set WEBHOOK_SECRET (a long random "
                                         "string)", setting="WEBHOOK_URLS")
            channels.append(WebhookChannel(urls=urls, secret=self.webhook_secret))
        if (smtp := self.smtp_settings()) is not None:
            channels.append(EmailChannel(smtp=smtp))
        return channels

    def distribute(self, summary: Summary, links: Mapping[str, Link]) -> DistributionRecord:
        """Notify every configured channel; delivery failures are recorded, not raised."""
        return distribute(summary=summary, links=links, channels=self.channels(),
                          delivery=Delivery(timeout_s=self.timeout_s, retries=self.retries,
                                            backoff_s=self.backoff_s))
