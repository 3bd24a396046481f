from __future__ import annotations

from django.urls import path

from annotate.review import views

urlpatterns = [
    path("p/<slug:slug>/review/", views.review_page, name="review_page"),
    path("p/<slug:slug>/review/notes/", views.review_notes, name="review_notes"),
    path("p/<slug:slug>/review/<int:item_id>/", views.review_submit, name="review_submit"),
    path("p/<slug:slug>/failure-modes/", views.failure_modes, name="failure_modes"),
    path("p/<slug:slug>/failure-modes/new/", views.mode_new, name="mode_new"),
    path("p/<slug:slug>/failure-modes/counts/", views.failure_counts, name="failure_counts"),
    path("p/<slug:slug>/failure-modes/export/", views.failure_modes_export, name="failure_modes_export"),
    path("p/<slug:slug>/failure-modes/notes/<int:note_id>/assign/", views.note_assign, name="note_assign"),
    path("p/<slug:slug>/failure-modes/<int:mode_id>/rename/", views.mode_rename, name="mode_rename"),
    path("p/<slug:slug>/failure-modes/<int:mode_id>/merge/", views.mode_merge, name="mode_merge"),
    path("p/<slug:slug>/failure-modes/<int:mode_id>/split/", views.mode_split, name="mode_split"),
    path("p/<slug:slug>/failure-modes/<int:mode_id>/delete/", views.mode_delete, name="mode_delete"),
    path("p/<slug:slug>/failure-modes/<int:mode_id>/promote/", views.mode_promote, name="mode_promote"),
]
