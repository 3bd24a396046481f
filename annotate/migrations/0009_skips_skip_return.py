from django.conf import settings
from django.db import migrations, models
from django.db.models import F


def skipped_at_backfill(apps, schema_editor):
    # Skips made before skips came back: their time is unknown, so they count from the lease they ended.
    Assignment = apps.get_model("annotate", "Assignment")
    Assignment.objects.filter(state="skipped").update(skipped_at=F("created_at"))


class Migration(migrations.Migration):

    dependencies = [
        ('annotate', '0008_people_invites_visibility'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='assignment',
            name='skipped_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='project',
            name='skip_return_minutes',
            field=models.PositiveIntegerField(default=60, help_text="Minutes before a skipped item comes back to the end of that annotator's queue."),
        ),
        migrations.RunPython(skipped_at_backfill, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name='assignment',
            index=models.Index(condition=models.Q(('state', 'skipped')), fields=['annotator', 'skipped_at'], name='assignment_skipped_idx'),
        ),
        migrations.AddConstraint(
            model_name='assignment',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('state', 'skipped'), ('skipped_at__isnull', False)), models.Q(models.Q(('state', 'skipped'), _negated=True), ('skipped_at__isnull', True)), _connector='OR'), name='assignment_skipped_at_iff_skipped'),
        ),
        migrations.AddConstraint(
            model_name='project',
            constraint=models.CheckConstraint(condition=models.Q(('skip_return_minutes__lte', 10080)), name='project_skip_return_bounded'),
        ),
    ]
