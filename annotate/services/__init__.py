"""Writes. Views, commands, tasks and the API all call these; nothing else writes these models.

One module per kind of write: projects, rubrics, members, items, labels (the submit), queue (claims and skips),
leases (lease expiry and the queue counters), gold (adjudication), errors (what a labeling action refuses with).
Callers import the module they need; nothing is re-exported here. A service that starts a Celery task sends it by
name through annotate.enqueue, so no service imports annotate.tasks.
"""
