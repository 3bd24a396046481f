from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")

application = get_wsgi_application()

# Downloads are built in child processes forked from a warm forkserver: start it before serving (a few seconds).
from annotate import export_process  # noqa: E402

export_process.warm()
