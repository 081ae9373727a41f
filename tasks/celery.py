"""The Celery app, configured from Django settings (namespace CELERY).

A shop that already runs its own Celery app does not need this module: the tasks are
`@shared_task`s and its `app.autodiscover_tasks()` finds them in `tasks.jobs`.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")

app = Celery("shop_recs")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["tasks"], related_name="jobs")
