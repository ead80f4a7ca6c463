"""Who is acting, for audit entries written by signals (user changes made in the admin)."""

from __future__ import annotations

import contextvars

current_actor: contextvars.ContextVar[str] = contextvars.ContextVar("current_actor", default="system")


class CurrentUserMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        token = current_actor.set(user.get_username() if user is not None and user.is_authenticated else "anonymous")
        try:
            return self.get_response(request)
        finally:
            current_actor.reset(token)
