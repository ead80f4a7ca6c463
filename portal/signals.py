"""Logins (success and failure), logouts and every change to a user or a role are audited."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from portal import audit
from portal.middleware import current_actor
from portal.models import Profile


def _role(user) -> str:
    profile = getattr(user, "profile", None) if user is not None else None
    return profile.role if profile is not None else ""


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kw):
    audit.record("login", username=user.get_username(), role=_role(user), outcome="ok")


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kw):
    audit.record("login", username=str(credentials.get("username", ""))[:150], outcome="failed")


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kw):
    if user is not None:
        audit.record("logout", username=user.get_username(), role=_role(user))


@receiver(post_save, sender=get_user_model())
def _user_saved(sender, instance, created, update_fields=None, **kw):
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # a login, audited above
    fields = "is_active={} is_staff={} is_superuser={}".format(instance.is_active, instance.is_staff,
                                                             instance.is_superuser)
    audit.record("user_change", username=current_actor.get(), outcome="ok",
                 detail=f"{'created' if created else 'changed'} user {instance.get_username()} ({fields})")


@receiver(post_delete, sender=get_user_model())
def _user_deleted(sender, instance, **kw):
    audit.record("user_change", username=current_actor.get(), detail=f"deleted user {instance.get_username()}")


@receiver(post_save, sender=Profile)
def _profile_saved(sender, instance, created, **kw):
    audit.record("user_change", username=current_actor.get(), role=instance.role,
                 school_code=instance.school_code,
                 detail=f"role of {instance.user.get_username()}: {instance.role} "
                        f"school={instance.school_code or '-'} agency={instance.agency or '-'}")
