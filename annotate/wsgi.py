from __future__ import annotations

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")

application = get_wsgi_application()

# What is loaded by now (Django, the apps, their modules: about 200,000 objects) lives as long as the process. Frozen,
# the cyclic collector stops walking it, so a full collection no longer costs a request tens of milliseconds.
gc.freeze()
