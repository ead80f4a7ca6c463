"""The admin site manages users and their roles (audited by signals). The audit log is shown
read-only; case-meeting entries and incidents are changed only through the portal's pages."""

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User

from portal.models import AuditEntry, Profile
from portal.roles import roles


class ProfileForm(forms.ModelForm):
    role = forms.ChoiceField(choices=lambda: [(k, f"{r.label} ({k})") for k, r in roles().items()])

    class Meta:
        model = Profile
        fields = ["role", "school_code", "agency"]


class ProfileInline(admin.StackedInline):
    model = Profile
    form = ProfileForm
    can_delete = False


class PortalUserAdmin(UserAdmin):
    inlines = [ProfileInline]


admin.site.unregister(User)
admin.site.register(User, PortalUserAdmin)


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["seq", "at", "username", "role", "action", "school_code", "outcome"]
    list_filter = ["action", "outcome"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
