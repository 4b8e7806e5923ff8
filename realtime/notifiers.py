"""The safety desk's notifiers (supervisor webhook, contact bridge, FCM), built from settings.

The one place that reads the notification settings: the safety desk is given the notifiers
that are configured (None for each that is not) and never reads settings itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from alerts.notify_fcm import FcmNotifier, fixed_token_credentials
from alerts.notify_webhook import WebhookNotifier
from realtime.settings import Settings


@dataclass(frozen=True)
class Notifiers:
    supervisor: WebhookNotifier | None = None
    contact_bridge: WebhookNotifier | None = None
    fcm: FcmNotifier | None = None

    async def aclose(self) -> None:
        for notifier in (self.supervisor, self.contact_bridge, self.fcm):
            if notifier is not None and hasattr(notifier, "aclose"):
                await notifier.aclose()


def notifiers_from(settings: Settings) -> Notifiers:
    secret = settings.webhook_secret.get_secret_value().encode() if settings.webhook_secret else b""
    supervisor = (
        WebhookNotifier(settings.supervisor_webhook_url, secret)
        if settings.supervisor_webhook_url
        else None
    )
    contact_bridge = (
        WebhookNotifier(settings.contact_webhook_url, secret)
        if settings.contact_webhook_url
        else None
    )
    fcm = (
        FcmNotifier(
            project_id=settings.fcm_project_id,
            service_account_file=(
                str(settings.fcm_service_account_file)
                if settings.fcm_service_account_file
                else None
            ),
            credentials=(
                fixed_token_credentials(settings.fcm_access_token.get_secret_value())
                if settings.fcm_access_token
                else None
            ),
            endpoint_base=(
                f"{settings.fcm_endpoint.rstrip('/')}/v1/projects"
                if settings.fcm_endpoint
                else None
            ),
        )
        if settings.fcm_project_id
        else None
    )
    return Notifiers(supervisor, contact_bridge, fcm)
