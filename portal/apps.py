from pathlib import Path

from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "学校ポータル"
    path = str(Path(__file__).resolve().parent)

    def ready(self) -> None:
        from portal import signals  # noqa: F401  (login, logout and user changes are audited)
