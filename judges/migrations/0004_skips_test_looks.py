
from django.db import migrations, models


def test_looks_backfill(apps, schema_editor):
    # Every earlier run whose items included test items was a look at test: count its test items and number the
    # looks of each judge again in the order they were made.
    JudgeRun = apps.get_model("judges", "JudgeRun")
    Item = apps.get_model("annotate", "Item")
    numbers: dict[int, int] = {}
    for run in JudgeRun.objects.select_related("version").order_by("created_at", "id"):
        if run.scope == "test":
            n_test = run.n_items
        elif run.scope == "dev":
            n_test = 0
        else:
            ids = [pk for chunk in run.chunks.all() for pk in chunk.item_ids]
            n_test = sum(
                Item.objects.filter(pk__in=ids[start : start + 5000], split="test").count()
                for start in range(0, len(ids), 5000)
            )
        number = None
        if n_test:
            number = numbers[run.version.judge_id] = numbers.get(run.version.judge_id, 0) + 1
        JudgeRun.objects.filter(pk=run.pk).update(n_test_items=n_test, test_run_number=number)


class Migration(migrations.Migration):

    dependencies = [
        ('judges', '0003_refkinds_single_label_reference'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='judgerun',
            name='judge_run_test_number_iff_test',
        ),
        migrations.AddField(
            model_name='judgerun',
            name='n_test_items',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.RunPython(test_looks_backfill, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='judgerun',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('n_test_items__gt', 0), ('test_run_number__isnull', False)), models.Q(('n_test_items', 0), ('test_run_number__isnull', True)), _connector='OR'), name='judge_run_test_number_iff_test_items'),
        ),
        migrations.AddConstraint(
            model_name='judgerun',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('scope', 'test'), _negated=True), ('n_test_items__gt', 0), _connector='OR'), name='judge_run_test_scope_has_test_items'),
        ),
        migrations.AddConstraint(
            model_name='judgerun',
            constraint=models.CheckConstraint(condition=models.Q(('n_test_items__lte', models.F('n_items'))), name='judge_run_test_items_le'),
        ),
    ]
