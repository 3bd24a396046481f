from __future__ import annotations

from django.urls import path

from judges import monitor_views, production_views, suggest_views, views

app_name = "judges"

urlpatterns = [
    path("p/<slug:slug>/judges/", views.judge_list, name="judge_list"),
    path("p/<slug:slug>/judges/new/", views.judge_new, name="judge_new"),
    path("p/<slug:slug>/judges/check/", views.template_check, name="template_check"),
    path("p/<slug:slug>/judges/<int:judge_id>/", views.judge_detail, name="judge_detail"),
    path("p/<slug:slug>/judges/<int:judge_id>/monitor/", monitor_views.monitor_settings, name="monitor_settings"),
    path("p/<slug:slug>/judges/<int:judge_id>/target/", views.judge_target, name="judge_target"),
    path("p/<slug:slug>/judges/compare/", views.compare_runs, name="compare"),
    path("p/<slug:slug>/judges/<int:judge_id>/versions/new/", views.version_new, name="version_new"),
    path("p/<slug:slug>/judges/versions/<int:version_id>/", views.version_detail, name="version_detail"),
    path("p/<slug:slug>/judges/versions/<int:version_id>/card.json", views.version_card, name="version_card"),
    path("p/<slug:slug>/judges/card-key/", views.card_key, name="card_key"),
    path("p/<slug:slug>/judges/versions/<int:version_id>/run/", views.run_start, name="run_start"),
    path("p/<slug:slug>/judges/runs/<int:run_id>/", views.run_detail, name="run_detail"),
    path("p/<slug:slug>/judges/runs/<int:run_id>/cancel/", views.run_cancel, name="run_cancel"),
    path("p/<slug:slug>/judges/failure-modes/suggest/", suggest_views.mode_suggest, name="mode_suggest"),
    path(
        "p/<slug:slug>/judges/failure-modes/suggest/<int:suggestion_id>/<int:index>/apply/",
        suggest_views.mode_suggest_apply,
        name="mode_suggest_apply",
    ),
    path(
        "p/<slug:slug>/judges/runs/<int:run_id>/production/",
        production_views.run_production,
        name="run_production",
    ),
]
