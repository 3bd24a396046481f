from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from annotate import (
    adjudication_views,
    history_views,
    logins,
    people_views,
    setup_views,
    site_views,
    skip_views,
    views,
)
from annotate.api import api

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", logins.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("invite/<str:secret>/", people_views.invite_open, name="invite_open"),
    path("people/", people_views.people_page, name="people"),
    # One-time set-password links (annotate.people.password_link): Django's views, our templates.
    path(
        "reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(template_name="registration/set_password.html"),
        name="password_reset_confirm",
    ),
    path(
        "reset/done/",
        auth_views.PasswordResetCompleteView.as_view(template_name="registration/set_password_done.html"),
        name="password_reset_complete",
    ),
    path("projects/new/", setup_views.project_new, name="project_new"),
    path("projects/new/preview/", setup_views.project_new_preview, name="project_new_preview"),
    path("p/<slug:slug>/", views.project_detail, name="project_detail"),
    path("p/<slug:slug>/settings/", setup_views.project_settings, name="project_settings"),
    path("p/<slug:slug>/settings/preview/", setup_views.project_preview, name="project_preview"),
    path("p/<slug:slug>/criteria/", setup_views.project_criteria, name="project_criteria"),
    path("p/<slug:slug>/members/", people_views.project_members, name="project_members"),
    path("p/<slug:slug>/status/", views.project_status, name="project_status"),
    path("p/<slug:slug>/label/", views.label_queue, name="label_queue"),
    path("p/<slug:slug>/label/<int:item_id>/", views.label_submit, name="label_submit"),
    path("p/<slug:slug>/label/<int:item_id>/skip/", views.label_skip, name="label_skip"),
    path("p/<slug:slug>/label/<int:item_id>/edit/", views.label_edit, name="label_edit"),
    path("p/<slug:slug>/label/undo/", views.label_undo, name="label_undo"),
    path("p/<slug:slug>/label/skipped/", skip_views.label_skipped, name="label_skipped"),
    path("p/<slug:slug>/label/skipped/<int:item_id>/reopen/", skip_views.label_reopen, name="label_reopen"),
    path("p/<slug:slug>/label/next/", views.label_next, name="label_next"),
    path("p/<slug:slug>/label/heartbeat/", views.label_heartbeat, name="label_heartbeat"),
    path("p/<slug:slug>/label/progress/", views.label_progress, name="label_progress"),
    path("p/<slug:slug>/history/", history_views.label_history, name="label_history"),
    path("p/<slug:slug>/history/<int:item_id>/", history_views.history_row, name="history_row"),
    path("p/<slug:slug>/history/<int:item_id>/edit/", history_views.history_row_edit, name="history_row_edit"),
    path("p/<slug:slug>/agreement/", views.agreement_page, name="agreement_page"),
    path("p/<slug:slug>/agreement/compute/", views.agreement_compute, name="agreement_compute"),
    path("p/<slug:slug>/adjudicate/", adjudication_views.adjudicate, name="adjudicate_queue"),
    path("p/<slug:slug>/adjudicate/<slug:criterion_key>/", adjudication_views.adjudicate, name="adjudicate"),
    path("p/<slug:slug>/rubric/", views.rubric_timeline, name="rubric_timeline"),
    path("p/<slug:slug>/rubric/relabel/", views.relabel_queue, name="relabel_queue"),
    path("p/<slug:slug>/rubric/reports/", views.rubric_reports_compute, name="rubric_reports_compute"),
    path("p/<slug:slug>/import/", views.import_start, name="import_start"),
    path("p/<slug:slug>/import/<int:job_id>/", views.import_job, name="import_job"),
    path("p/<slug:slug>/import/<int:job_id>/confirm/", views.import_confirm, name="import_confirm"),
    path("p/<slug:slug>/export/", views.export_page, name="export_page"),
    path("p/<slug:slug>/export/download/", views.export_download, name="export_download"),
    path("settings/tokens/", views.token_list, name="token_list"),
    path("settings/tokens/<int:token_id>/revoke/", views.token_revoke, name="token_revoke"),
    path("api/v1/", api.urls),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", site_views.favicon, name="favicon"),
    path("", include("annotate.review.urls")),
    path("", include("judges.urls")),
    path("admin/", admin.site.urls),
]
