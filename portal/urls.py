from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from portal import views

admin.site.site_header = "学校ポータル 管理"
admin.site.site_title = "学校ポータル 管理"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(template_name="portal/login.html",
                                                redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("schools/", views.schools, name="schools"),
    path("schools/<str:school_code>/", views.school, name="school"),
    path("schools/<str:school_code>/export.csv", views.export, name="export"),
    path("pupils/<str:pupil_id>/", views.pupil, name="pupil"),
    path("pupils/<str:pupil_id>/timeline.png", views.pupil_chart, name="pupil_chart"),
    path("pupils/<str:pupil_id>/support/", views.record_decision, name="record_decision"),
    path("support/<str:case_id>/outcome/", views.record_outcome, name="record_outcome"),
    path("alerts/", views.alerts, name="alerts"),
    path("audit/", views.audit_log, name="audit"),
    path("audit/incidents/<int:incident_id>/close/", views.close_incident, name="close_incident"),
    path("notice/", views.notice, name="notice"),
    path("admin/", admin.site.urls),
]
