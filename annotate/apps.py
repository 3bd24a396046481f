from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import pre_delete


def _release_leases_of_deleted_user(sender: Any, instance: Any, **kwargs: Any) -> None:
    from annotate.services.members import user_leases_release

    user_leases_release(user=instance)


class AnnotateConfig(AppConfig):
    name = "annotate"
    verbose_name = "Labeling"

    def ready(self) -> None:
        # Inside the deletion's transaction, after the on_delete checks (a project's only lead is refused first).
        pre_delete.connect(_release_leases_of_deleted_user, sender=settings.AUTH_USER_MODEL, dispatch_uid=__name__)
