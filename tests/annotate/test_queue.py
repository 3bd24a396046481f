"""The queue: who gets which item, leases, skips, submits, double submits, and concurrency on real Postgres."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from annotate import selectors
from annotate.models import Assignment, Item, Label, Project, RubricVersion
from annotate.services import labels as labels_sql
from annotate.services import queue as queue_sql
from annotate.services.errors import ItemNotNeeded, QueueError
from annotate.services.labels import label_edit, label_submit, label_values_from_form
from annotate.services.leases import assignments_expire
from annotate.services.projects import project_set_status
from annotate.services.queue import queue_claim, queue_next, queue_skip
from annotate.services.rubrics import rubric_set_criteria
from tests.factories import DEFAULT_CRITERIA, ItemFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

VALUES = {"acceptable": "pass", "follows_instructions": "pass", "factually_correct": "fail"}


def _claim(project, user):
    return queue_claim(project=project, annotator=user, rubric_version_id=project.current_rubric_id)


def _submit(project, user, item, key="k1", values=None, **kwargs):
    return label_submit(
        project=project,
        annotator=user,
        item_id=item.pk,
        criteria=selectors.criteria_of_version(project.current_rubric_id),
        values=values or VALUES,
        submission_key=key,
        **kwargs,
    )


def _expire(leases) -> None:
    now = timezone.now()
    leases.update(created_at=now - timezone.timedelta(minutes=20), expires_at=now - timezone.timedelta(minutes=1))


@pytest.fixture
def active(project):
    project_set_status(project=project, status="active")
    project.refresh_from_db()
    return project


def test_an_annotator_is_offered_each_item_once_and_never_one_they_labeled(active, items, annotator):
    seen = []
    while (item := _claim(active, annotator)) is not None:
        seen.append(item.pk)
        _submit(active, annotator, item, key=f"k{item.pk}")
    assert sorted(seen) == sorted(i.pk for i in items)
    assert _claim(active, annotator) is None


def test_an_item_is_never_given_to_more_annotators_than_its_overlap(active, items):
    annotators = [UserFactory() for _ in range(5)]
    for item in items:
        Item.objects.filter(pk=item.pk)
    claims = Counter()
    for user in annotators:
        for _ in range(len(items)):
            item = _claim(active, user)
            if item is None:
                break
            claims[item.pk] += 1
    assert max(claims.values()) == active.overlap
    assert sum(claims.values()) == active.overlap * len(items)


def test_items_closest_to_complete_come_first_then_priority(active, annotator, other_annotator):
    third = UserFactory()
    a, b, c = (ItemFactory(project=active) for _ in range(3))
    first = _claim(active, other_annotator)
    _submit(active, other_annotator, first)
    Item.objects.filter(pk__in=[x.pk for x in (a, b, c) if x.pk != first.pk][:1]).update(priority=1)
    assert _claim(active, annotator).pk == first.pk  # one label already: closest to complete
    prioritised = Item.objects.get(project=active, priority=1)
    assert _claim(active, third).pk == prioritised.pk


def test_the_shuffled_order_is_stable(active, items, annotator, other_annotator):
    order_one = [_claim(active, annotator).pk for _ in items]
    Assignment.objects.all().delete()
    Item.objects.update(n_leased=0)
    order_two = [_claim(active, other_annotator).pk for _ in items]
    assert (
        order_one
        == order_two
        == list(Item.objects.filter(project=active).order_by("order_key").values_list("pk", flat=True))
    )


def test_a_double_submit_stores_one_set_of_labels_and_answers_as_saved(active, items, annotator):
    item = _claim(active, annotator)
    assert _submit(active, annotator, item, key="form-1").duplicate is False
    assert _submit(active, annotator, item, key="form-1").duplicate is True
    assert Label.objects.filter(item=item, annotator=annotator).count() == 3
    assert Item.objects.get(pk=item.pk).n_submitted == 1


def test_a_second_tab_cannot_overwrite_labels_already_given(active, items, annotator):
    item = _claim(active, annotator)
    _submit(active, annotator, item, key="tab-1")
    with pytest.raises(QueueError, match="already labeled this item"):
        _submit(active, annotator, item, key="tab-2", values={**VALUES, "acceptable": "fail"})
    assert set(Label.objects.filter(item=item).values_list("value", flat=True)) == {"pass", "fail"}
    assert Label.objects.get(item=item, criterion__key="acceptable").value == "pass"


def test_every_criterion_is_required_and_values_must_fit_the_kind(active, items, annotator):
    item = _claim(active, annotator)
    with pytest.raises(QueueError, match="Choose a value"):
        _submit(active, annotator, item, values={"acceptable": "pass"})
    with pytest.raises(QueueError, match="not a binary label"):
        _submit(active, annotator, item, values={**VALUES, "acceptable": "a"})
    assert not Label.objects.exists()


def test_a_note_is_required_on_fail_when_the_project_asks(active, items, annotator):
    Project.objects.filter(pk=active.pk).update(require_note_on_fail=True)
    active.refresh_from_db()
    item = _claim(active, annotator)
    with pytest.raises(QueueError, match="note"):
        _submit(active, annotator, item)
    _submit(active, annotator, item, note="States a wrong date.")
    assert Label.objects.filter(item=item, note="States a wrong date.").count() == 3


def test_a_submit_after_the_lease_expired_is_saved_while_the_item_still_wants_labels(active, items, annotator):
    item = _claim(active, annotator)
    _expire(Assignment.objects.all())
    _submit(active, annotator, item)
    assert Item.objects.get(pk=item.pk).n_submitted == 1
    assert Item.objects.get(pk=item.pk).n_leased == 0


def test_a_late_submit_on_an_item_that_filled_up_is_refused_plainly_and_changes_nothing(active, items, annotator):
    late = _claim(active, annotator)
    _expire(Assignment.objects.filter(annotator=annotator))
    assignments_expire()
    for user in (UserFactory(), UserFactory()):
        item = _claim(active, user)
        assert item.pk == late.pk
        _submit(active, user, item, key=f"k{user.pk}")
    with pytest.raises(ItemNotNeeded, match="not saved"):
        _submit(active, annotator, late)
    assert Item.objects.get(pk=late.pk).n_submitted == 2
    assert not Label.objects.filter(annotator=annotator).exists()


def test_skip_releases_the_item_to_others_and_keeps_it_out_of_my_queue(active, annotator, other_annotator):
    only = ItemFactory(project=active)
    assert _claim(active, annotator).pk == only.pk
    queue_skip(project=active, annotator=annotator, item_id=only.pk)
    assert Item.objects.get(pk=only.pk).n_leased == 0
    assert _claim(active, annotator) is None
    assert _claim(active, other_annotator).pk == only.pk


def _next(project, user, holding):
    return queue_next(project=project, annotator=user, rubric_version_id=project.current_rubric_id, holding=holding)


def _my_leases(user) -> list[int]:
    return sorted(Assignment.objects.filter(annotator=user, state="leased").values_list("item_id", flat=True))


def test_the_next_item_for_a_page_is_a_lease_it_lacks_oldest_first_before_a_fresh_claim(active, items, annotator):
    shown, prefetched, stray = (_claim(active, annotator) for _ in range(3))
    assert _next(active, annotator, {shown.pk, prefetched.pk}).pk == stray.pk
    assert _next(active, annotator, {prefetched.pk}).pk == shown.pk  # oldest lease first
    assert _my_leases(annotator) == sorted([shown.pk, prefetched.pk, stray.pk]), "nothing new was claimed"
    fresh = _next(active, annotator, {shown.pk, prefetched.pk, stray.pk})
    assert fresh.pk not in {shown.pk, prefetched.pk, stray.pk}
    assert _my_leases(annotator) == sorted([shown.pk, prefetched.pk, stray.pk, fresh.pk])
    # A client that does not say what it holds is taken to hold every lease: a fresh claim.
    unsaid = _next(active, annotator, None)
    assert unsaid.pk not in {shown.pk, prefetched.pk, stray.pk, fresh.pk}


def test_the_next_item_is_never_an_expired_lease_or_one_already_submitted(active, annotator):
    for _ in range(3):
        ItemFactory(project=active)
    expired, submitted = _claim(active, annotator), _claim(active, annotator)
    _expire(Assignment.objects.filter(annotator=annotator, item=expired))
    _submit(active, annotator, submitted)
    last = _next(active, annotator, set())
    assert last is not None and last.pk not in {expired.pk, submitted.pk}
    assert _next(active, annotator, {last.pk}) is None  # the expired one stays out until the sweep frees it


def test_the_next_item_is_never_a_lease_in_another_project_or_for_another_rubric_version(active, annotator):
    elsewhere = ProjectFactory()
    project_set_status(project=elsewhere, status="active")
    elsewhere = Project.objects.get(pk=elsewhere.pk)
    ItemFactory(project=elsewhere)
    foreign = _claim(elsewhere, annotator)
    stale = ItemFactory(project=active, n_leased=1)
    other_version = RubricVersion.objects.create(project=active, number=99)
    Assignment.objects.create(
        item=stale,
        annotator=annotator,
        rubric_version=other_version,
        expires_at=timezone.now() + dt.timedelta(minutes=5),
    )
    wanted = ItemFactory(project=active)
    fresh = _next(active, annotator, set())
    assert fresh is not None and fresh.pk == wanted.pk
    assert Item.objects.get(pk=wanted.pk).n_leased == 1
    assert _next(active, annotator, set()).pk == wanted.pk  # now a live lease the page lacks: handed back
    assert _next(active, annotator, {wanted.pk}) is None
    assert foreign.pk != wanted.pk


def _plan_nodes(node, parent=""):
    """Each node with the relationship that ties its branch to the plan: a node under a SubPlan (say, a scan under the
    subquery's aggregate) reports "SubPlan", so the test can tell a per-candidate probe from a join."""
    yield node, parent
    for child in node.get("Plans", []):
        relationship = child.get("Parent Relationship", "")
        yield from _plan_nodes(child, "SubPlan" if parent == "SubPlan" else relationship)


def _claim_params(project, annotator) -> dict:
    """The claim statements' parameters, as services.queue passes them."""
    now = timezone.now()
    return {
        "project": project.pk,
        "overlap": project.overlap,
        "user": annotator.pk,
        "version": project.current_rubric_id,
        "now": now,
        "expires": now + dt.timedelta(minutes=5),
        "held": [],
        "n_criteria": len(selectors.criteria_of_version(project.current_rubric_id)),
    }


def _all_pass(project, annotator, items) -> None:
    """The annotator's pass on every criterion of each item, written at once (no queue counts kept)."""
    criteria = selectors.criteria_of_version(project.current_rubric_id)
    now = timezone.now()
    Label.objects.bulk_create(
        Label(
            item=i,
            criterion=c,
            rubric_version_id=c.rubric_version_id,
            annotator=annotator,
            value="pass",
            created_at=now,
        )
        for i in items
        for c in criteria
    )


@pytest.mark.postgres(reason="pins PostgreSQL's plan of the claim statements")
@pytest.mark.parametrize("statement", ["_CLAIM_SQL", "_NEXT_SQL"])
def test_a_claim_checks_the_annotators_labels_per_candidate_item_whatever_the_statistics_say(
    statement, active, items, annotator
):
    # As an anti join, the planner may read all of an annotator's labels once per candidate when its statistics say
    # they have none (a new annotator): the claim then slows down with every submit. A SubPlan is always a probe.
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + getattr(queue_sql, statement), _claim_params(active, annotator))
        plan = cursor.fetchone()[0]
    plan = plan if isinstance(plan, list) else __import__("json").loads(plan)
    label_scans = [
        parent for node, parent in _plan_nodes(plan[0]["Plan"]) if node.get("Relation Name") == "annotate_label"
    ]
    assert label_scans == ["SubPlan"]


def _label_probes(plan_json):
    """The scans of annotate_label in an EXPLAIN ANALYZE plan: (rows read per loop, loops, index used)."""
    plan = plan_json if isinstance(plan_json, list) else __import__("json").loads(plan_json)
    return [
        (
            (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)),
            node["Actual Loops"],
            node.get("Index Name"),
        )
        for node, _parent in _plan_nodes(plan[0]["Plan"])
        if node.get("Relation Name") == "annotate_label" and node.get("Actual Loops")
    ]


@pytest.mark.postgres(reason="pins what PostgreSQL reads under statistics taken before a rubric version had labels")
def test_claims_and_submits_read_one_items_labels_per_probe_when_the_statistics_are_stale(active, annotator):
    # A large label table seldom gets ANALYZEd by autovacuum (a tenth of it must change first), so a new project's
    # version, or a new annotator, can have "no labels" in the statistics long after they have thousands. A probe that
    # trusted them read every label of the version (or of the annotator) for each candidate item: claims and submits
    # slowed down with each label given, 157 ms a submit after 1,000 in an overlap-2 project.
    other = ProjectFactory(overlap=2)
    project_set_status(project=other, status="active")
    other.refresh_from_db()
    stranger = UserFactory()
    _all_pass(other, stranger, ItemFactory.create_batch(1000, project=other))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotate_label")  # statistics: this version and this annotator have no labels
    criteria = selectors.criteria_of_version(active.current_rubric_id)
    mine = ItemFactory.create_batch(600, project=active)
    _all_pass(active, annotator, mine)
    Item.objects.filter(pk__in=[i.pk for i in mine]).update(n_submitted=1)  # half complete: first in the queue
    wanted = ItemFactory(project=active)
    params = _claim_params(active, annotator)
    with connection.cursor() as cursor:
        cursor.execute("SAVEPOINT explain")
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + queue_sql._CLAIM_SQL, params)
        claim_probes = _label_probes(cursor.fetchone()[0])
        cursor.execute("ROLLBACK TO SAVEPOINT explain")
        lock_sql = labels_sql._SUBMIT_LOCK_SQL.replace("{criteria}", ", ".join(str(c.pk) for c in criteria))
        cursor.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + lock_sql,
            {
                "user": annotator.pk,
                "version": active.current_rubric_id,
                "project": active.pk,
                "item": mine[0].pk,
                "key": "k",
            },
        )
        lock_probes = _label_probes(cursor.fetchone()[0])
    # The claim probed each of the 600 items the annotator finished before reaching the one they have not.
    assert sum(loops for _rows, loops, _index in claim_probes) >= 600
    # Each probe reads the candidate's own labels (3 here), not the 1,800 of the version or of the annotator.
    assert claim_probes and all(rows <= 3 for rows, _loops, _index in claim_probes), claim_probes
    assert lock_probes and all(rows <= 3 for rows, _loops, _index in lock_probes), lock_probes
    assert _claim(active, annotator).pk == wanted.pk


def test_an_item_id_from_another_project_is_refused(active, annotator):
    foreign = ItemFactory(project=ProjectFactory())
    with pytest.raises(QueueError, match="not in this project"):
        _submit(active, annotator, foreign)
    with pytest.raises(QueueError, match="not in this project"):
        queue_skip(project=active, annotator=annotator, item_id=foreign.pk)


def test_editing_is_compare_and_swap_on_the_revision(active, items, annotator):
    item = _claim(active, annotator)
    _submit(active, annotator, item)
    criteria = selectors.criteria_of_version(active.current_rubric_id)
    revisions = {c.key: 1 for c in criteria}
    label_edit(
        project=active,
        annotator=annotator,
        item_id=item.pk,
        criteria=criteria,
        values={**VALUES, "factually_correct": "pass"},
        revisions=revisions,
    )
    assert Label.objects.get(item=item, criterion__key="factually_correct").revision == 2
    with pytest.raises(QueueError, match="changed elsewhere"):
        label_edit(
            project=active,
            annotator=annotator,
            item_id=item.pk,
            criteria=criteria,
            values={**VALUES, "factually_correct": "fail"},
            revisions=revisions,
        )
    assert Label.objects.get(item=item, criterion__key="factually_correct").value == "pass"


def test_a_rubric_change_reopens_every_item_for_the_new_version(active, items, annotator):
    item = _claim(active, annotator)
    _submit(active, annotator, item)
    rubric_set_criteria(
        project=active,
        criteria=[*DEFAULT_CRITERIA, {"key": "concise", "name": "Concise", "description": "No padding."}],
    )
    active.refresh_from_db()
    assert Item.objects.get(pk=item.pk).n_submitted == 0
    assert not Assignment.objects.exists()
    offered = {_claim(active, annotator).pk for _ in items}
    assert item.pk in offered


def test_pairwise_labels_are_stored_in_canonical_terms_whatever_side_was_shown(db):
    project = ProjectFactory(kind="pairwise", overlap=1)
    project_set_status(project=project, status="active")
    project.refresh_from_db()
    users = [UserFactory() for _ in range(16)]
    orders = Counter()
    criteria = selectors.criteria_of_version(project.current_rubric_id)
    for user in users:
        item = ItemFactory(project=project, output="", output_a="A text", output_b="B text")
        claimed = _claim(project, user)
        assert claimed.pk == item.pk
        from annotate.splits import shown_order

        shown = shown_order(user.pk, item.pk)
        orders[shown] += 1
        values, problems = label_values_from_form(
            project=project, criteria=criteria, data={f"c-{c.key}": "left" for c in criteria}, shown=shown
        )
        assert not problems
        label_submit(project=project, annotator=user, item_id=item.pk, criteria=criteria, values=values)
        stored = Label.objects.filter(item=item)
        assert set(stored.values_list("shown_order", flat=True)) == {shown}
        assert set(stored.values_list("value", flat=True)) == {"a" if shown == "ab" else "b"}
    assert orders["ab"] > 0 and orders["ba"] > 0


@pytest.mark.postgres(
    reason="claims racing on SKIP LOCKED row locks; SQLite has one writer, and its shared in-memory test database "
    "refuses a second writer ('table is locked') instead of waiting"
)
@pytest.mark.django_db(transaction=True)
def test_fifty_annotators_claiming_at_once_never_exceed_the_overlap_or_share_a_lease():
    project = ProjectFactory(overlap=2)
    project_set_status(project=project, status="active")
    project.refresh_from_db()
    items = [ItemFactory(project=project) for _ in range(30)]
    users = [UserFactory() for _ in range(50)]
    barrier = threading.Barrier(len(users))
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def work(user):
        try:
            barrier.wait()
            mine = []
            for _ in range(3):
                item = _claim(project, user)
                if item is None:
                    break
                mine.append(item.pk)
            results[user.pk] = mine
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    per_item = Counter(pk for claims in results.values() for pk in claims)
    assert max(per_item.values()) <= project.overlap
    assert sum(per_item.values()) == project.overlap * len(items)  # every slot taken, none twice
    for claims in results.values():
        assert len(claims) == len(set(claims))  # nobody got the same item twice
    leases = Counter(Assignment.objects.values_list("item_id", flat=True))
    assert leases == per_item
    assert dict(Item.objects.filter(n_leased__gt=0).values_list("pk", "n_leased")) == dict(leases)
    assert connection.vendor == "postgresql"


@pytest.mark.postgres(reason="row locks held by another connection: SQLite locks the whole database instead")
@pytest.mark.django_db(transaction=True)
def test_a_claim_that_only_meets_locked_rows_waits_for_them_instead_of_saying_the_queue_is_empty(monkeypatch):
    project = ProjectFactory(overlap=1)
    project_set_status(project=project, status="active")
    project.refresh_from_db()
    only = ItemFactory(project=project)
    annotator = UserFactory()
    locked, release, released = threading.Event(), threading.Event(), threading.Event()

    def hold_the_row():  # as another annotator's submit or claim holds it for a moment
        try:
            with transaction.atomic():
                Item.objects.select_for_update().get(pk=only.pk)
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()
            released.set()

    sleeps = []

    def sleep(seconds):  # the claim's pause before it tries again: the other transaction ends meanwhile
        sleeps.append(seconds)
        release.set()
        released.wait(10)

    monkeypatch.setattr(queue_sql.time, "sleep", sleep)
    holder = threading.Thread(target=hold_the_row)
    holder.start()
    assert locked.wait(10)
    claimed = _claim(project, annotator)
    holder.join(10)
    assert claimed is not None and claimed.pk == only.pk
    assert len(sleeps) == 1  # the first try skipped the locked row, saw the item still wanted, and tried again
    # Nothing waits: an empty queue answers at once, without pausing.
    assert _claim(project, UserFactory()) is None and len(sleeps) == 1


@pytest.mark.postgres(reason="autovacuum settings of PostgreSQL tables")
def test_the_hot_tables_are_analyzed_after_a_hundredth_of_them_changed_not_a_tenth(db):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relname IN "
            "('annotate_label', 'annotate_item', 'annotate_assignment')"
        )
        options = dict(cursor.fetchall())
    assert set(options) == {"annotate_label", "annotate_item", "annotate_assignment"}
    for table, reloptions in options.items():
        assert "autovacuum_analyze_scale_factor=0.01" in reloptions, table
        assert "autovacuum_analyze_threshold=1000" in reloptions, table
