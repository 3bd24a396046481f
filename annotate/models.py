"""The data model every other part builds on. Invariants live in the database, not only in forms."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q, QuerySet
from django.db.models.deletion import CASCADE, Collector, ProtectedError
from django.utils import timezone


class Project(models.Model):
    class Kind(models.TextChoices):
        BINARY = "binary", "Binary (pass/fail per criterion)"
        PAIRWISE = "pairwise", "Pairwise (A/B/tie per criterion)"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        ARCHIVED = "archived", "Archived"

    # Fewer criteria than this cannot describe quality well enough to activate a project.
    MIN_CRITERIA_TO_ACTIVATE = 3
    MAX_OVERLAP = 50

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    instructions = models.TextField(blank=True, help_text="Markdown shown to annotators above every item.")
    overlap = models.PositiveSmallIntegerField(default=2, help_text="Annotators wanted per item.")
    allow_tie = models.BooleanField(default=True, help_text="Pairwise only: offer Tie.")
    require_note_on_fail = models.BooleanField(
        default=False, help_text="Ask for a note whenever a criterion fails (or loses, in pairwise)."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    # The daily production sample (annotate.samples): how many of the previous day's production records join the
    # queue each day (0 turns it off), and the local hour (settings.TIME_ZONE) from which the day's sample is taken.
    sample_size = models.PositiveSmallIntegerField(
        default=50, help_text="Production records sampled into the queue each day (0: off)."
    )
    sample_hour = models.PositiveSmallIntegerField(default=6, help_text="Local hour (0-23) the daily sample is taken.")
    MAX_SAMPLE_SIZE = 10_000  # project_sample_size_bounded
    # What the labeling screens show of an item besides its text (blind annotation): the metadata keys listed here,
    # and its external id only when "external_id" is listed. Empty by default: ids such as `…/chatgpt-vs-tulu_65B`
    # would tell annotators which models they compare. Lead pages (adjudication, imports, exports) show everything.
    annotator_fields = models.JSONField(default=list, blank=True)
    # How long a skipped item stays out of the annotator's queue before it comes back at its end (annotate.skips).
    skip_return_minutes = models.PositiveIntegerField(
        default=60, help_text="Minutes before a skipped item comes back to the end of that annotator's queue."
    )
    MAX_SKIP_RETURN_MINUTES = 7 * 24 * 60  # project_skip_return_bounded: a week
    # The newest rubric version, kept by services.rubric_set_criteria so the hot path reads it with the project.
    current_rubric = models.ForeignKey(
        "RubricVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=["binary", "pairwise"]), name="project_kind_valid"),
            models.CheckConstraint(
                condition=Q(status__in=["draft", "active", "archived"]), name="project_status_valid"
            ),
            models.CheckConstraint(condition=Q(overlap__gte=1, overlap__lte=50), name="project_overlap_range"),
            models.CheckConstraint(condition=~Q(slug=""), name="project_slug_not_empty"),
            models.CheckConstraint(condition=Q(sample_hour__lte=23), name="project_sample_hour_range"),
            models.CheckConstraint(condition=Q(sample_size__lte=10_000), name="project_sample_size_bounded"),
            models.CheckConstraint(condition=Q(skip_return_minutes__lte=10_080), name="project_skip_return_bounded"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_pairwise(self) -> bool:
        return self.kind == self.Kind.PAIRWISE


class RubricVersion(models.Model):
    """An immutable snapshot of a project's criteria. Editing criteria makes a new version; labels keep theirs."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rubric_versions")
    number = models.PositiveIntegerField()
    note = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="rubric_version_number_unique"),
            models.CheckConstraint(condition=Q(number__gte=1), name="rubric_version_number_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug} rubric v{self.number}"


class Criterion(models.Model):
    rubric_version = models.ForeignKey(RubricVersion, on_delete=models.CASCADE, related_name="criteria")
    key = models.SlugField(max_length=64)
    name = models.CharField(max_length=200)
    description = models.TextField()
    position = models.PositiveSmallIntegerField()
    # The rubric version this criterion's name and definition date from: its own version when it was added or
    # reworded there, else the same as the previous version's criterion of the same key. Labels given under any
    # version from this one on mean the same thing, so a rubric change carries them over (services.rubric_labels_carry).
    defined_in = models.ForeignKey(RubricVersion, on_delete=models.CASCADE, related_name="+")

    class Meta:
        ordering = ["rubric_version", "position"]
        constraints = [
            models.UniqueConstraint(fields=["rubric_version", "key"], name="criterion_key_unique_in_version"),
            models.UniqueConstraint(fields=["rubric_version", "position"], name="criterion_position_unique_in_version"),
            # Target of the composite foreign key from Label: a label's criterion belongs to the label's version.
            models.UniqueConstraint(fields=["id", "rubric_version"], name="criterion_id_version_unique"),
            models.CheckConstraint(condition=~Q(key=""), name="criterion_key_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.name})"


class Item(models.Model):
    class Source(models.TextChoices):
        IMPORT = "import", "Import"
        API = "api", "API"
        SAMPLE = "sample", "Production sample"

    class Split(models.TextChoices):
        TRAIN = "train", "Train"
        DEV = "dev", "Dev"
        TEST = "test", "Test"

    # No index of its own: every index below starts with project_id (item_external_id_unique serves the look-ups by
    # project alone), and one more index costs every import row its upkeep.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="items", db_index=False)
    external_id = models.CharField(max_length=255)
    input = models.TextField()
    output = models.TextField(blank=True, help_text="Binary projects.")
    output_a = models.TextField(blank=True, help_text="Pairwise projects.")
    output_b = models.TextField(blank=True, help_text="Pairwise projects.")
    metadata = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.IMPORT)
    split = models.CharField(max_length=8, choices=Split.choices)
    content_hash = models.CharField(max_length=64)
    # A stable pseudo-random position in the queue (from the same hash as the split), so annotators see items in a
    # shuffled but reproducible order.
    order_key = models.BigIntegerField(default=0)
    # How many annotators have submitted every criterion of the project's current rubric version for this item.
    # Maintained by the label services (and recomputed when the rubric changes); the queue orders on it.
    n_submitted = models.PositiveSmallIntegerField(default=0)
    # How many leases (state "leased", expired or not until the sweep removes them) reserve this item. Kept on the
    # row, not counted, so that concurrent claims serialise on the item row: see services.queue_claim.
    n_leased = models.PositiveSmallIntegerField(default=0)
    # Items with a higher priority are offered first among equally complete ones: today's production sample, or items
    # a lead queued for re-labeling under the current rubric (annotate.drift.relabel_queue).
    PRIORITY_NORMAL = 0
    PRIORITY_SAMPLE = 1
    PRIORITY_RELABEL = 2
    priority = models.SmallIntegerField(default=0)
    # The day a daily production sample put this item in the queue (NULL for items that came any other way).
    sampled_on = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "external_id"], name="item_external_id_unique"),
            models.CheckConstraint(condition=Q(split__in=["train", "dev", "test"]), name="item_split_valid"),
            models.CheckConstraint(condition=Q(source__in=["import", "api", "sample"]), name="item_source_valid"),
            models.CheckConstraint(condition=~Q(external_id=""), name="item_external_id_not_empty"),
            models.CheckConstraint(condition=Q(n_submitted__lte=50), name="item_n_submitted_bounded"),
            # The queue's priorities are a closed set (PRIORITY_*): a stray value would silently reorder the queue.
            models.CheckConstraint(condition=Q(priority__in=[0, 1, 2]), name="item_priority_known"),
        ]
        indexes = [
            # Serves split-filtered reads: judge runs on dev/test, exports by split.
            models.Index(fields=["project", "split"], name="item_project_split_idx"),
            # Serves the queue's claim: open items, closest to complete first, then priority, then shuffled order.
            models.Index(fields=["project", "-n_submitted", "-priority", "order_key"], name="item_queue_idx"),
            # Serves "today's sample" on the lead's dashboard and the job that lowers yesterday's sample's priority.
            models.Index(
                fields=["project", "sampled_on"], name="item_sampled_idx", condition=Q(sampled_on__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug}/{self.external_id}"


def cascade_unless_only_lead(collector: Collector, field: Any, sub_objs: QuerySet[Membership], using: str) -> None:
    """Deleting users deletes their memberships (the on_delete of Membership.user), except when that would leave a
    project without an active lead: then the deletion is refused with ProtectedError (also from `manage.py shell`).
    member_remove and member_set_role keep the same rule for members removed or demoted in the app."""
    leaving = {m.user_id for m in sub_objs}
    only: set[models.Model] = {
        m
        for m in sub_objs
        if m.role == Membership.Role.LEAD
        and m.deactivated_at is None
        and not Membership.objects.filter(
            project_id=m.project_id, role=Membership.Role.LEAD, user__is_active=True, deactivated_at__isnull=True
        )
        .exclude(user_id__in=leaving)
        .exists()
    }
    if only:
        raise ProtectedError(
            "Deleting these users leaves a project without a lead: make someone else lead first.", only
        )
    CASCADE(collector, field, sub_objs, using)


class Membership(models.Model):
    class Role(models.TextChoices):
        ANNOTATOR = "annotator", "Annotator"
        LEAD = "lead", "Lead"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=cascade_unless_only_lead, related_name="memberships")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    # A deactivated member keeps the row (and their labels) but is no member for access: the access helper reads
    # only memberships with deactivated_at NULL. A lead can reactivate them.
    deactivated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "role", "user"]
        constraints = [
            models.UniqueConstraint(fields=["user", "project"], name="membership_unique"),
            models.CheckConstraint(condition=Q(role__in=["annotator", "lead"]), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.project.slug}"

    @property
    def is_active(self) -> bool:
        return self.deactivated_at is None


class Invite(models.Model):
    """A link that lets one person join a project with a role: shown once, expiring, single use.

    Only a SHA-256 of the link's secret is stored (the secret is 256 random bits, as for API tokens). `used_at` is
    set by a conditional update (`filter(used_at=None).update(...)`), so two people opening the link at once cannot
    both join. `email` is where the lead said the link goes; it binds nothing (the link is the credential).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invites")
    role = models.CharField(max_length=16, choices=Membership.Role.choices)
    email = models.EmailField(blank=True)
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(role__in=["annotator", "lead"]), name="invite_role_valid"),
            models.CheckConstraint(condition=~Q(token_hash=""), name="invite_hash_not_empty"),
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("created_at")), name="invite_expires"),
            # used_by may become NULL later (the account deleted); a use without a time cannot exist.
            models.CheckConstraint(
                condition=Q(used_by__isnull=True) | Q(used_at__isnull=False), name="invite_used_by_has_time"
            ),
        ]
        indexes = [
            # Serves the members page's list of a project's open invites.
            models.Index(fields=["project", "-created_at"], name="invite_project_idx"),
        ]

    def __str__(self) -> str:
        return f"invite {self.pk} to {self.project_id} as {self.role}"

    @property
    def state(self) -> str:
        if self.used_at is not None:
            return "used"
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "open"


class Label(models.Model):
    """One annotator's judgment of one item on one criterion, under one rubric version.

    Pairwise values are canonical: `a` means the item's output_a is better, whichever side it was shown on;
    `shown_order` records what the annotator saw (`ab`: A on the left, `ba`: B on the left).
    """

    class Value(models.TextChoices):
        PASS = "pass", "Pass"
        FAIL = "fail", "Fail"
        A = "a", "A is better"
        B = "b", "B is better"
        TIE = "tie", "Tie"

    class Order(models.TextChoices):
        AB = "ab", "A left, B right"
        BA = "ba", "B left, A right"

    BINARY_VALUES = frozenset({"pass", "fail"})
    PAIRWISE_VALUES = frozenset({"a", "b", "tie"})

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="labels")
    criterion = models.ForeignKey(Criterion, on_delete=models.PROTECT, related_name="labels")
    # Indexed by label_version_id_idx, which leads with it.
    rubric_version = models.ForeignKey(RubricVersion, on_delete=models.PROTECT, related_name="labels", db_index=False)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="labels")
    value = models.CharField(max_length=8, choices=Value.choices)
    note = models.TextField(blank=True)
    # NULL, not "", for binary labels: the check constraint below ties NULL to binary values.
    shown_order = models.CharField(max_length=2, choices=Order.choices, null=True, blank=True)  # noqa: DJ001
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    # Bumped on every edit: edits are compare-and-swap on this column, so two tabs cannot overwrite each other.
    revision = models.PositiveIntegerField(default=1)
    # The key of the rendered form that wrote this label: a repeated submit of the same form is recognised and
    # answered as a success instead of being stored twice or refused.
    submission_key = models.CharField(max_length=64, blank=True)
    # A copy of the annotator's label under the previous rubric version, made when the rubric changed and this
    # criterion did not (services.rubric_labels_carry): not new work, so throughput does not count it.
    carried = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["item", "criterion", "annotator"]
        constraints = [
            models.UniqueConstraint(
                # Column order serves "has this annotator labeled this item under this version" in the queue.
                fields=["item", "annotator", "rubric_version", "criterion"],
                name="label_one_per_annotator",
            ),
            models.CheckConstraint(condition=Q(value__in=["pass", "fail", "a", "b", "tie"]), name="label_value_valid"),
            models.CheckConstraint(
                condition=Q(shown_order__isnull=True) | Q(shown_order__in=["ab", "ba"]),
                name="label_shown_order_valid",
            ),
            # A binary value never carries a display order; a pairwise value always does.
            models.CheckConstraint(
                condition=(Q(value__in=["pass", "fail"]) & Q(shown_order__isnull=True))
                | (Q(value__in=["a", "b", "tie"]) & Q(shown_order__isnull=False)),
                name="label_order_matches_value",
            ),
            models.CheckConstraint(condition=Q(revision__gte=1), name="label_revision_positive"),
        ]
        indexes = [
            # Serves the agreement report's load (annotate.reports._labels_binary_chunks): a version's smallest and
            # largest label id at once, then its labels range by range of ids without reading other versions'.
            models.Index(fields=["rubric_version", "id"], name="label_version_id_idx"),
            # Serves the per-version reads: exports load one rubric version's labels.
            models.Index(fields=["rubric_version", "criterion"], name="label_version_criterion_idx"),
            models.Index(fields=["annotator", "created_at"], name="label_annotator_created_idx"),
            # Serves the lead dashboard's throughput (labels per annotator per day in a recent window, read from the
            # index alone) and its label counts per rubric version.
            models.Index(fields=["rubric_version", "created_at", "annotator"], name="label_version_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.annotator} {self.value} on {self.item_id}/{self.criterion_id}"


class Assignment(models.Model):
    """A lease: the item is reserved for this annotator until `expires_at`. Ends on submit, skip or expiry.

    A skip keeps the row in state `skipped` with `skipped_at`: it no longer reserves the item, and keeps it out of
    this annotator's queue until `project.skip_return_minutes` have passed; then the item comes back at the end of
    their queue (annotate.skips), or earlier when they reopen it from their Skipped list.
    """

    class State(models.TextChoices):
        LEASED = "leased", "Leased"
        SKIPPED = "skipped", "Skipped"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    rubric_version = models.ForeignKey(RubricVersion, on_delete=models.CASCADE, related_name="assignments")
    state = models.CharField(max_length=8, choices=State.choices, default=State.LEASED)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    # When the annotator skipped the item: set exactly on skipped rows (assignment_skipped_at_iff_skipped).
    skipped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "annotator"], name="assignment_one_lease_per_annotator"),
            models.CheckConstraint(
                condition=(Q(state="skipped") & Q(skipped_at__isnull=False))
                | (~Q(state="skipped") & Q(skipped_at__isnull=True)),
                name="assignment_skipped_at_iff_skipped",
            ),
            models.CheckConstraint(condition=Q(state__in=["leased", "skipped"]), name="assignment_state_valid"),
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("created_at")), name="assignment_expires"),
        ]
        indexes = [
            # Serves the queue's count of live leases per item and the expiry sweep.
            models.Index(fields=["item", "expires_at"], name="assignment_item_expiry_idx"),
            models.Index(fields=["annotator", "state", "expires_at"], name="assignment_annotator_idx"),
            # Serves the queue's return of skipped items (oldest skip first) and the annotator's Skipped list.
            models.Index(
                fields=["annotator", "skipped_at"], name="assignment_skipped_idx", condition=Q(state="skipped")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.item_id} leased to {self.annotator_id} until {self.expires_at:%H:%M}"


# --- Getting data in: imports, API tokens, the daily production sample ----------------------------------------


IMPORTED_PREFIX = "imported:"


def imported_username(project_id: int, name: str) -> str:
    """The username of the identity a label import gives the annotator `name` in one project.

    Django's username validator allows only letters, digits and @ . + - _, so no signup, admin form or
    `createsuperuser` can take a name with a colon: the identity never collides with a real account, and each project
    has its own.
    """
    return f"{IMPORTED_PREFIX}{project_id}:{name}"


def shown_username(username: str) -> str:
    """The name to show for an account: an imported identity's readable name, anyone else's username."""
    if username.startswith(IMPORTED_PREFIX):
        return username.split(":", 2)[-1]
    return username


class ImportedUser(models.Model):
    """Marks a user that a label import created for an annotator name that is not a member of `project`: inactive,
    without a password, named `imported:<project id>:<name>` (see `imported_username`; shown as `<name>`).

    Such users only carry labels; they can never log in. Kept apart from the user model so that a deactivated real
    account is never mistaken for an imported one. Imports before the namespace created plain usernames; those stay
    their project's identity for that name.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="imported"
    )
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} (imported)"


class ApiToken(models.Model):
    """A personal API token. Only a SHA-256 of its secret is stored: the full token is shown once, at creation.

    A token acts as its user: it reaches exactly the projects and roles the user has, through the same access
    helper as the pages. The public `prefix` finds the row; the secret is compared in constant time.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=~Q(prefix=""), name="api_token_prefix_not_empty"),
            models.CheckConstraint(condition=~Q(secret_hash=""), name="api_token_hash_not_empty"),
        ]
        indexes = [models.Index(fields=["user", "-created_at"], name="api_token_user_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…) of {self.user}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ImportJob(models.Model):
    """One uploaded file on its way in: checked (preview), confirmed by the lead, then applied. The page polls it.

    Status moves forward only, by conditional updates (`filter(status=...).update(...)`), so a task delivered
    twice finds its job already claimed and does nothing.
    """

    class Kind(models.TextChoices):
        ITEMS = "items", "Items"
        LABELS = "labels", "Labels"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to be checked"
        PREVIEWING = "previewing", "Checking"
        PREVIEWED = "previewed", "Checked: waiting for your confirmation"
        INVALID = "invalid", "Refused: bad rows, nothing imported"
        QUEUED = "queued", "Waiting to be imported"
        APPLYING = "applying", "Importing"
        DONE = "done", "Imported"
        FAILED = "failed", "Failed: nothing imported"
        EXPIRED = "expired", "Expired: never confirmed"

    RUNNING = frozenset({Status.PENDING, Status.PREVIEWING, Status.QUEUED, Status.APPLYING})

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    # The name the file was uploaded under, shown back to the lead only. The stored file has a random name.
    filename = models.CharField(max_length=255)
    stored_name = models.CharField(max_length=64, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    file_format = models.CharField(max_length=8)
    update_conflicts = models.BooleanField(default=False)
    report = models.JSONField(default=dict, blank=True)
    errors = models.JSONField(default=list, blank=True)
    n_errors = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=["items", "labels"]), name="import_job_kind_valid"),
            models.CheckConstraint(
                condition=Q(
                    status__in=[
                        "pending",
                        "previewing",
                        "previewed",
                        "invalid",
                        "queued",
                        "applying",
                        "done",
                        "failed",
                        "expired",
                    ]
                ),
                name="import_job_status_valid",
            ),
            models.CheckConstraint(condition=Q(file_format__in=["jsonl", "csv"]), name="import_job_format_valid"),
        ]
        indexes = [
            # Serves the import page's list of the project's recent jobs.
            models.Index(fields=["project", "-created_at"], name="import_job_project_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} import {self.pk} into {self.project_id} ({self.status})"

    @property
    def is_running(self) -> bool:
        return self.status in self.RUNNING

    @property
    def is_waiting(self) -> bool:
        """Waiting for a worker to take it (so no progress yet)."""
        return self.status in (self.Status.PENDING, self.Status.QUEUED)


class ProductionRecord(models.Model):
    """One input/output pair a pipeline sent from real traffic. The daily sample draws items from these.

    Records are deduplicated by content per day at the door (the unique constraint), so a pipeline that retries a
    request, or logs the same answer twice, does not weigh twice in the sample.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="production_records")
    external_id = models.CharField(max_length=255, blank=True)
    input = models.TextField()
    output = models.TextField(blank=True)
    output_a = models.TextField(blank=True)
    output_b = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64)
    received_at = models.DateTimeField()
    # The local day (settings.TIME_ZONE) of received_at: the unit the daily sample and the drift check work on.
    received_on = models.DateField()

    class Meta:
        ordering = ["project", "received_at"]
        constraints = [
            # Also serves the daily job's read of one project's records of one day.
            models.UniqueConstraint(
                fields=["project", "received_on", "content_hash"], name="production_record_unique_per_day"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project_id} record {self.content_hash[:12]} of {self.received_on}"


class DailySample(models.Model):
    """The production sample taken for one project on one day. Its unique row makes the daily job idempotent."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="daily_samples")
    day = models.DateField(help_text="The day the sample was taken and its items joined the queue.")
    records_day = models.DateField(help_text="The day whose production records were sampled (the day before).")
    seed = models.CharField(max_length=64)
    n_records = models.PositiveIntegerField(default=0)
    n_candidates = models.PositiveIntegerField(default=0)
    n_added = models.PositiveIntegerField(default=0)
    # The structural drift check of the records day against the project's items (annotate.samples.drift_compare).
    drift = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "-day"]
        constraints = [models.UniqueConstraint(fields=["project", "day"], name="daily_sample_one_per_day")]

    def __str__(self) -> str:
        return f"{self.project_id} sample of {self.day}: {self.n_added} items"


class GoldLabel(models.Model):
    """A lead's adjudicated label for an item on a criterion. Wherever a reference label is needed, gold beats
    the annotators' majority (and the report says which one it used)."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="gold_labels")
    criterion = models.ForeignKey(Criterion, on_delete=models.PROTECT, related_name="gold_labels")
    value = models.CharField(max_length=8, choices=Label.Value.choices)
    note = models.TextField(blank=True)
    set_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "criterion"], name="gold_label_one_per_item_criterion"),
            models.CheckConstraint(
                condition=Q(value__in=["pass", "fail", "a", "b", "tie"]), name="gold_label_value_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"gold {self.value} on {self.item_id}/{self.criterion_id}"


class AgreementReport(models.Model):
    """The stored agreement report of one rubric version: pages read it, never compute it.

    `n_labels` and `last_label_at` describe the labels it was computed from; a newer label or gold label makes it
    stale, and the beat job recomputes it (see annotate.tasks.agreement_reports_refresh).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="agreement_reports")
    rubric_version = models.ForeignKey(RubricVersion, on_delete=models.CASCADE, related_name="agreement_reports")
    data = models.JSONField(default=dict)
    n_labels = models.PositiveIntegerField(default=0)
    last_label_at = models.DateTimeField(null=True, blank=True)
    n_gold = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField()
    seconds = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "rubric_version"], name="agreement_report_one_per_version")
        ]

    def __str__(self) -> str:
        return f"agreement report {self.project_id} v{self.rubric_version_id} at {self.computed_at:%Y-%m-%d %H:%M}"


class ThroughputCount(models.Model):
    """How many labels an annotator created in a project on one day (in settings.TIME_ZONE): the dashboard's
    throughput reads these rows instead of counting labels.

    Maintained by annotate.throughput.throughput_count_pass, which adds the labels with ids up to the project's
    ThroughputWatermark. Creation counts: editing or deleting a label later does not change them, and an annotator
    removed from the project keeps theirs.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="throughput_counts")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    day = models.DateField()
    n = models.IntegerField()

    class Meta:
        constraints = [
            # Column order serves the dashboard's read: one project's rows over a range of days.
            models.UniqueConstraint(fields=["project", "day", "annotator"], name="throughput_count_one_per_day"),
            models.CheckConstraint(condition=Q(n__gte=0), name="throughput_count_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.n} labels by {self.annotator_id} in {self.project_id} on {self.day}"


class ThroughputWatermark(models.Model):
    """How far the project's ThroughputCount rows go: every label with id <= counted_through is in them, none above.

    Label ids come from one sequence, but transactions commit out of id order, so an id can become visible after a
    larger one. A pass therefore only moves the watermark to an id below which no transaction can still be
    writing: `pending_through` is the largest id seen at the previous pass and `pending_writers` the Postgres
    transactions that were then writing labels; once all of them have ended, every id up to pending_through is
    committed (or rolled back for good) and can be counted.
    """

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, primary_key=True, related_name="throughput_watermark"
    )
    counted_through = models.BigIntegerField(default=0)
    pending_through = models.BigIntegerField(null=True, blank=True)
    pending_writers = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(counted_through__gte=0), name="throughput_watermark_not_negative"),
            models.CheckConstraint(
                condition=Q(pending_through__isnull=True) | Q(pending_through__gt=models.F("counted_through")),
                name="throughput_pending_ahead",
            ),
        ]

    def __str__(self) -> str:
        return f"throughput of {self.project_id} counted through label {self.counted_through}"


class RelabelRequest(models.Model):
    """A lead's wish to queue the project's outdated items for re-labeling (the drift page's button).

    The request returns at once; a worker runs annotate.drift.relabel_request_run, which queues the items and marks
    the request done in one transaction, so a worker that dies leaves it queued for the redelivered task.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        DONE = "done", "Done"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="relabel_requests")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    requested_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    rubric_version = models.ForeignKey(
        RubricVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )  # the current version when the items were queued
    n_queued = models.PositiveIntegerField(default=0)
    n_outdated = models.PositiveIntegerField(default=0)
    n_released = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            # One open request per project: pressing the button twice, or in two tabs, asks once.
            models.UniqueConstraint(fields=["project"], condition=Q(status="queued"), name="relabel_request_one_open"),
            models.CheckConstraint(condition=Q(status__in=["queued", "done"]), name="relabel_request_status_known"),
            models.CheckConstraint(
                condition=Q(status="queued", finished_at__isnull=True) | Q(status="done", finished_at__isnull=False),
                name="relabel_request_finished_when_done",
            ),
        ]

    def __str__(self) -> str:
        return f"relabel request {self.pk} of {self.project_id}: {self.status}"


# The error-analysis models live beside their code; imported here so that Django registers them with the app.
from annotate.review.models import FailureMode as FailureMode  # noqa: E402
from annotate.review.models import ReviewNote as ReviewNote  # noqa: E402
