# Load the Celery app whenever Django starts, so that tasks are sent through it
# (the usual pattern for a Django project's Celery app).
from tasks.celery import app as celery_app

__all__ = ["celery_app"]
