"""The open operational alerts (failed runs, toda_platform.alerts) for the admin site's index."""

from django import template

from toda_platform import alerts
from toda_platform.settings import Paths

register = template.Library()


@register.simple_tag
def open_ops_alerts() -> list[dict]:
    return alerts.listed(Paths.from_env())
