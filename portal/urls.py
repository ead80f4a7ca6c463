from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from portal import views

admin.site.site_header = "学校ポータル 管理"
admin.site.site_title = "学校ポータル 管理"
admin.site.index_template = "portal/admin_index.html"  # with the open alerts of failed runs

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(template_name="portal/login.html",
                                                redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("schools/", views.schools, name="schools"),
    path("schools/<str:school_code>/", views.school, name="school"),
    path("schools/<str:school_code>/export.csv", views.export, name="export"),
    path("schools/<str:school_code>/karte/", views.karte, name="karte"),
    path("schools/<str:school_code>/karte/chart.png", views.karte_chart, name="karte_chart"),
    path("schools/<str:school_code>/screen/", views.screen, name="screen"),
    path("board/karte/", views.board_karte, name="board_karte"),
    path("board/karte/beating_odds.png", views.board_chart, name="board_chart"),
    path("support/effects.png", views.effects_chart, name="effects_chart"),
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
