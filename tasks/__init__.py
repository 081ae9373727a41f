"""Celery app and tasks of shop-recs (`celery -A tasks worker`)."""

from .celery import app

__all__ = ["app"]
