"""LLM judges: versioned prompts on pinned models, their runs over items, the verdicts, and the completion cache.

Invariants live in Postgres: one judge per (project, criterion key), version numbers unique per judge, one verdict
per (run, item, order), status and value choices. Writes go through judges.services only.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotate.models import Item, Project, RubricVersion
from judges import recorded


class Judge(models.Model):
    """The LLM judge of one criterion of a project (one judge per criterion, as in EvalGen).

    The criterion is named by its key, not by a row: criteria rows belong to one rubric version, and a judge outlives
    rubric edits. A run resolves the key in the rubric version it is started under.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="judges")
    criterion_key = models.SlugField(max_length=64)
    name = models.CharField(max_length=200)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Target(models.TextChoices):
        NONE = "", "No target yet"
        TPR_TNR = "tpr_tnr", "TPR and TNR at least"
        KAPPA = "kappa", "Cohen's κ at least"
        KAPPA_HUMAN = "kappa_human", "κ at least the humans' own κ on this criterion"
        ACCURACY = "accuracy", "Accuracy (agreement) at least"

    # The bar a run must clear to call this judge calibrated (judges.compare.target_check reads these). Which numbers
    # are set follows the kind; the constraints below keep each in its range and require the ones the kind needs.
    target = models.CharField(max_length=16, choices=Target.choices, blank=True, default="")
    target_tpr = models.FloatField(null=True, blank=True)
    target_tnr = models.FloatField(null=True, blank=True)
    target_kappa = models.FloatField(null=True, blank=True)
    target_accuracy = models.FloatField(null=True, blank=True)
    # Whether an item with one human label (no gold) may serve as the human reference for this judge's figures. With
    # it off, the figures use only gold labels and strict majorities of two or more labels (annotate.stats.reference).
    single_label_reference = models.BooleanField(default=True)

    class Meta:
        ordering = ["project", "criterion_key"]
        constraints = [
            models.UniqueConstraint(fields=["project", "criterion_key"], name="judge_one_per_criterion"),
            models.CheckConstraint(condition=~Q(criterion_key=""), name="judge_criterion_key_not_empty"),
            models.CheckConstraint(
                condition=Q(target__in=["", "tpr_tnr", "kappa", "kappa_human", "accuracy"]), name="judge_target_valid"
            ),
            models.CheckConstraint(
                condition=Q(target_tpr__isnull=True) | (Q(target_tpr__gte=0) & Q(target_tpr__lte=1)),
                name="judge_target_tpr_range",
            ),
            models.CheckConstraint(
                condition=Q(target_tnr__isnull=True) | (Q(target_tnr__gte=0) & Q(target_tnr__lte=1)),
                name="judge_target_tnr_range",
            ),
            models.CheckConstraint(
                condition=Q(target_kappa__isnull=True) | (Q(target_kappa__gte=-1) & Q(target_kappa__lte=1)),
                name="judge_target_kappa_range",
            ),
            models.CheckConstraint(
                condition=Q(target_accuracy__isnull=True) | (Q(target_accuracy__gte=0) & Q(target_accuracy__lte=1)),
                name="judge_target_accuracy_range",
            ),
            # The numbers the chosen kind of target needs are set.
            models.CheckConstraint(
                condition=~Q(target="tpr_tnr") | (Q(target_tpr__isnull=False) & Q(target_tnr__isnull=False)),
                name="judge_target_tpr_tnr_set",
            ),
            models.CheckConstraint(
                condition=~Q(target="kappa") | Q(target_kappa__isnull=False), name="judge_target_kappa_set"
            ),
            models.CheckConstraint(
                condition=~Q(target="accuracy") | Q(target_accuracy__isnull=False), name="judge_target_accuracy_set"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug}/{self.criterion_key} judge"


class JudgeVersion(models.Model):
    """One immutable prompt + model + parameters of a judge. Editing makes version n+1 whose parent is this one.

    Nothing updates a version after it is created (judge_versions.judge_version_create is the only writer), so a run's
    verdicts always refer to exactly the prompt that produced them.
    """

    judge = models.ForeignKey(Judge, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    change_note = models.CharField(max_length=500, blank=True)
    system_template = models.TextField(blank=True)
    user_template = models.TextField()
    # The name of an endpoint in settings (JUDGE_ENDPOINTS or the built-in "standin"); never a URL from a user.
    endpoint = models.CharField(max_length=64)
    model = models.CharField(max_length=200)
    # True when the lead ticked the override for a floating alias (gpt-4o, ...-latest): every page warns about it.
    model_is_alias = models.BooleanField(default=False)
    temperature = models.FloatField(default=0.0)
    max_tokens = models.PositiveIntegerField(default=400)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["judge", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["judge", "number"], name="judge_version_number_unique"),
            models.CheckConstraint(condition=Q(number__gte=1), name="judge_version_number_positive"),
            models.CheckConstraint(
                condition=Q(temperature__gte=0) & Q(temperature__lte=2), name="judge_version_temperature_range"
            ),
            models.CheckConstraint(
                condition=Q(max_tokens__gte=1) & Q(max_tokens__lte=32000), name="judge_version_max_tokens_range"
            ),
            models.CheckConstraint(condition=~Q(model=""), name="judge_version_model_not_empty"),
            models.CheckConstraint(condition=~Q(user_template=""), name="judge_version_user_template_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.judge} v{self.number}"

    @property
    def uses_standin(self) -> bool:
        """Served by the offline stand-in (the built-in endpoint or one configured at its URL), or by the `recorded`
        endpoint with a prompt no real judge answered (it falls back to the plain stand-in): it costs $0."""
        from judges import llm

        return llm.is_standin(self.endpoint) or (llm.is_recorded(self.endpoint) and self.recording is None)

    @property
    def recording(self) -> recorded.Recording | None:
        """On the `recorded` endpoint: the real judge's recorded answers this version replays (its model and templates
        match an LLMBar recording), else None."""
        from judges import llm

        if not llm.is_recorded(self.endpoint):
            return None
        return recorded.recording_of(
            model=self.model, system_template=self.system_template, user_template=self.user_template
        )


class FewShotExample(models.Model):
    """A worked example shown to the judge through {{ examples }}. Only train items qualify (the service checks)."""

    version = models.ForeignKey(JudgeVersion, on_delete=models.CASCADE, related_name="examples")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="+")
    position = models.PositiveSmallIntegerField()
    # pass/fail for binary judges; a/b/tie (canonical: a = the item's output_a) for pairwise ones.
    verdict = models.CharField(max_length=8)
    reasoning = models.TextField(blank=True)

    class Meta:
        ordering = ["version", "position"]
        constraints = [
            models.UniqueConstraint(fields=["version", "position"], name="few_shot_position_unique"),
            models.UniqueConstraint(fields=["version", "item"], name="few_shot_item_unique"),
            models.CheckConstraint(
                condition=Q(verdict__in=["pass", "fail", "a", "b", "tie"]), name="few_shot_verdict_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"example {self.position} of {self.version}"


class JudgeRun(models.Model):
    """One judge version over a split or chosen items. Progress, tokens and cost are counted from the verdicts
    (selectors.run_totals), so they can never disagree with them; the report is stored when the run is done."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Scope(models.TextChoices):
        DEV = "dev", "Dev split"
        TEST = "test", "Test split (held out)"
        ALL = "all", "All items"
        ITEMS = "items", "Chosen items"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="judge_runs")
    version = models.ForeignKey(JudgeVersion, on_delete=models.PROTECT, related_name="runs")
    # The rubric version whose criterion text the prompt shows and whose human labels the report compares against.
    rubric_version = models.ForeignKey(RubricVersion, on_delete=models.PROTECT, related_name="+")
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.DEV)
    # How many of the run's items are in the held-out test split. Any run with test items (the test split, or "All
    # items" and chosen items once confirmed) is a look at test: it gets a number, 1 for this judge's first look,
    # 2 for the second... (shown on every page).
    n_test_items = models.PositiveIntegerField(default=0)
    test_run_number = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    n_items = models.PositiveIntegerField(default=0)
    n_calls = models.PositiveIntegerField(default=0, help_text="Verdicts wanted: items x orders.")
    # The estimate shown before the run started: calls not already cached, tokens from the rendered text's length.
    estimate = models.JSONField(default=dict, blank=True)
    # Prices per 1M tokens (input, output) in USD when the run started; null when the model has no price in settings.
    price_in = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    price_out = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    report = models.JSONField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When a verdict was last stored: the reconciler re-enqueues the chunks of runs where this stops moving.
    progress_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "done", "failed", "cancelled"]),
                name="judge_run_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(scope__in=["dev", "test", "all", "items"]), name="judge_run_scope_valid"
            ),
            # A run that includes test items always carries its look number; no other run does.
            models.CheckConstraint(
                condition=(Q(n_test_items__gt=0) & Q(test_run_number__isnull=False))
                | (Q(n_test_items=0) & Q(test_run_number__isnull=True)),
                name="judge_run_test_number_iff_test_items",
            ),
            models.CheckConstraint(
                condition=~Q(scope="test") | Q(n_test_items__gt=0), name="judge_run_test_scope_has_test_items"
            ),
            models.CheckConstraint(condition=Q(n_test_items__lte=models.F("n_items")), name="judge_run_test_items_le"),
        ]
        indexes = [
            # Serves the reconciler's scan of unfinished runs.
            models.Index(fields=["status", "progress_at"], name="judge_run_status_progress_idx"),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.version}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def looked_at_test(self) -> bool:
        return self.test_run_number is not None


class RunChunk(models.Model):
    """A slice of a run's items, the unit a Celery task works on. Claimed by a conditional update with a token."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    run = models.ForeignKey(JudgeRun, on_delete=models.CASCADE, related_name="chunks")
    number = models.PositiveIntegerField()
    item_ids = models.JSONField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    # The claim of the task now working on the chunk; a worker that finds another token here stops.
    token = models.CharField(max_length=32, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "number"]
        constraints = [
            models.UniqueConstraint(fields=["run", "number"], name="run_chunk_number_unique"),
            models.CheckConstraint(
                condition=Q(state__in=["queued", "running", "done", "failed", "cancelled"]),
                name="run_chunk_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"chunk {self.number} of run {self.run_id}"


class Verdict(models.Model):
    """The judge's answer for one item in one order of one run. Pairwise items are judged in both orders.

    `value` is canonical: for pairwise, `a` means the item's output_a won whichever position it was shown in; `answer`
    keeps what the model literally said. An answer that cannot be parsed is `invalid` with its raw text kept; a call
    that failed after every retry is `error`. Neither is dropped or guessed.
    """

    class Order(models.TextChoices):
        ONE = "one", "Single output"
        AB = "ab", "A shown first"
        BA = "ba", "B shown first"

    class Status(models.TextChoices):
        OK = "ok", "OK"
        INVALID = "invalid", "Invalid answer"
        ERROR = "error", "Call failed"

    run = models.ForeignKey(JudgeRun, on_delete=models.CASCADE, related_name="verdicts")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+")
    order = models.CharField(max_length=3, choices=Order.choices)
    status = models.CharField(max_length=8, choices=Status.choices)
    value = models.CharField(max_length=8, blank=True)
    answer = models.CharField(max_length=8, blank=True)
    reasoning = models.TextField(blank=True)
    raw = models.TextField(blank=True, help_text="The model's text, kept when it could not be parsed.")
    error = models.CharField(max_length=120, blank=True, help_text="A short category, never a response body.")
    cache_key = models.CharField(max_length=64, blank=True)
    cached = models.BooleanField(default=False)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "item", "order"]
        constraints = [
            models.UniqueConstraint(fields=["run", "item", "order"], name="verdict_one_per_run_item_order"),
            models.CheckConstraint(condition=Q(order__in=["one", "ab", "ba"]), name="verdict_order_valid"),
            models.CheckConstraint(condition=Q(status__in=["ok", "invalid", "error"]), name="verdict_status_valid"),
            # An OK verdict has a value from the closed set; any other status has none.
            models.CheckConstraint(
                condition=(Q(status="ok") & Q(value__in=["pass", "fail", "a", "b", "tie"]))
                | (~Q(status="ok") & Q(value="")),
                name="verdict_value_matches_status",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.status} {self.value} on {self.item_id}/{self.order}"


class CachedCompletion(models.Model):
    """An exact-match cache of model answers, stored as text and JSON (never pickled).

    The key hashes the endpoint, model, rendered messages and parameters, so a re-run of any version whose rendered
    request is identical reuses the answer and makes no call.
    """

    key = models.CharField(max_length=64, primary_key=True)
    endpoint = models.CharField(max_length=64)
    model = models.CharField(max_length=200)
    content = models.TextField()
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    finish_reason = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.model} answer {self.key[:12]}"


class Monitor(models.Model):
    """The daily monitor of one judge's criterion: the calibrated version a lead chose to judge production records
    with, the most a day may cost, and the pass-rate floor below which the dashboard and the API raise an alert.

    Written by judges.monitor.monitor_set only; the beat job (judges.monitor.monitors_run_due) reads it."""

    judge = models.OneToOneField(Judge, on_delete=models.CASCADE, related_name="monitor")
    version = models.ForeignKey(JudgeVersion, on_delete=models.PROTECT, related_name="+")
    # Null: judge every record of the day (up to MONITOR_MAX_RECORDS). Else a seeded random sample whose estimated
    # cost fits this many USD.
    daily_budget_usd = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    # Null: no cap of its own (MONITOR_MAX_RECORDS still applies). Else at most this many records a day, a seeded
    # random sample (with a budget too, whichever is smaller).
    daily_sample_cap = models.PositiveIntegerField(null=True, blank=True)
    # The pass-rate floor: a day whose interval's upper bound lies below it is an alert. Null: no alert.
    threshold = models.FloatField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    # The day beat last sent the task for, and when: the claim that keeps a day being judged from being sent again.
    sent_day = models.DateField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(threshold__isnull=True) | (Q(threshold__gte=0) & Q(threshold__lte=1)),
                name="monitor_threshold_range",
            ),
            models.CheckConstraint(
                condition=Q(daily_budget_usd__isnull=True) | Q(daily_budget_usd__gte=0),
                name="monitor_budget_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(daily_sample_cap__isnull=True) | Q(daily_sample_cap__gte=1),
                name="monitor_sample_cap_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"monitor of {self.judge}"


class MonitorDay(models.Model):
    """What the monitor found on one day's production records of one criterion: the judge's pass rate, corrected
    for its measured errors, with its interval. Recomputing the day updates this row (the unique constraint keeps
    one); the answers come from the completion cache, so a recomputation costs nothing and gives the same figures."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="monitor_days")
    criterion_key = models.SlugField(max_length=64)
    day = models.DateField(help_text="The day whose production records were judged.")
    version = models.ForeignKey(JudgeVersion, on_delete=models.PROTECT, related_name="+")
    # The finished run whose TPR and TNR corrected the pass rate (test split preferred, else dev, else all items).
    calibration_run = models.ForeignKey(JudgeRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    seed = models.CharField(max_length=64)
    n_records = models.PositiveIntegerField(default=0, help_text="Production records of the day.")
    n_sampled = models.PositiveIntegerField(default=0, help_text="Records judged (all, or the sample the budget fits).")
    n_ok = models.PositiveIntegerField(default=0)
    n_pass = models.PositiveIntegerField(default=0)
    n_invalid = models.PositiveIntegerField(default=0)
    n_errors = models.PositiveIntegerField(default=0)
    # Of the latest computation: calls made, answers taken from the cache, and what the calls cost.
    n_called = models.PositiveIntegerField(default=0)
    n_cached = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    # Every computation of this day together (null when the model has no price).
    total_cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    budget_usd = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    estimated_cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    sample_note = models.CharField(max_length=300, blank=True)
    observed_pass_rate = models.FloatField(null=True, blank=True)
    tpr = models.FloatField(null=True, blank=True)
    tnr = models.FloatField(null=True, blank=True)
    n_pos = models.PositiveIntegerField(default=0)
    n_neg = models.PositiveIntegerField(default=0)
    value = models.FloatField(null=True, blank=True)
    ci_low = models.FloatField(null=True, blank=True)
    ci_high = models.FloatField(null=True, blank=True)
    reason = models.CharField(max_length=300, blank=True, help_text="Why the corrected rate is not defined.")
    estimator = models.CharField(max_length=100, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    alert = models.BooleanField(default=False)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["project", "criterion_key", "day"]
        constraints = [
            # Also serves the dashboard's and the API's read of one project's days.
            models.UniqueConstraint(fields=["project", "criterion_key", "day"], name="monitor_day_one_per_criterion"),
            # An alert needs an interval and a threshold, and the interval's upper bound below it.
            models.CheckConstraint(
                condition=Q(alert=False)
                | (Q(ci_high__isnull=False) & Q(threshold__isnull=False) & Q(ci_high__lt=models.F("threshold"))),
                name="monitor_day_alert_below_threshold",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project_id}/{self.criterion_key} monitor of {self.day}"


class MonitorDayClaim(models.Model):
    """Who is computing one monitor's day: the claim that keeps two computations of it (beat and a manual re-run, a
    redelivered message, two workers) from running, and paying, at once. One row per (monitor, day), by constraint;
    judges.monitor.monitor_day_compute takes it under a row lock before any call and marks it finished after. A claim
    that is neither finished nor older than MONITOR_RESEND_SECONDS turns a second computation away; an older one
    (its worker died) may be taken over."""

    monitor = models.ForeignKey(Monitor, on_delete=models.CASCADE, related_name="claims")
    day = models.DateField()
    token = models.CharField(max_length=32)
    claimed_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["monitor", "day"], name="monitor_day_claim_one_per_day")]

    def __str__(self) -> str:
        return f"claim of {self.monitor_id} for {self.day}"


class ModeSuggestion(models.Model):
    """A judge endpoint's suggested grouping of a project's unassigned review notes into failure modes.

    judges.suggest writes it: the request goes through the judges' client, completion cache and single-flight lock,
    and its tokens and cost are counted as a run's are. The groups are only shown; a lead applies each one (which
    creates the mode and assigns its notes through annotate.review.services). A garbage answer leaves `groups` empty
    and says so in `message`: nothing changes.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Asking the model"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="mode_suggestions")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    endpoint = models.CharField(max_length=64)
    model = models.CharField(max_length=200)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    # The ids of the notes sent, in the order sent (the answer names notes by their position in this list).
    note_ids = models.JSONField(default=list)
    # [{"name", "definition", "note_ids": [...], "applied_mode_id": null}] once parsed; [] when the answer was unusable.
    groups = models.JSONField(default=list, blank=True)
    message = models.CharField(max_length=300, blank=True)
    cache_key = models.CharField(max_length=64, blank=True)
    cached = models.BooleanField(default=False)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "done", "failed"]), name="mode_suggestion_status_valid"
            ),
            # One suggestion at a time per project: a second click while one runs asks nothing more.
            models.UniqueConstraint(
                fields=["project"], condition=Q(status__in=["queued", "running"]), name="mode_suggestion_one_open"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running"]) | Q(finished_at__isnull=False),
                name="mode_suggestion_finished_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"mode suggestion {self.pk} of {self.project_id}: {self.status}"
