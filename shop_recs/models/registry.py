"""The model registry: training runs and the model versions they produce.

Exactly one version is active at a time (a partial unique constraint enforces it in the database),
and at most one run is open (queued or running) at a time: the `open_slot` column is unique and is
set only while a run is open, so two "Retrain now" clicks at once cannot start two runs.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

OPEN_SLOT = "training"


class TrainingRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    OPEN_STATUSES = (Status.QUEUED, Status.RUNNING)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    open_slot = models.CharField(max_length=16, null=True, blank=True, unique=True, editable=False)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    trigger = models.CharField(max_length=32, default="manual")
    parameters = models.JSONField(default=dict, blank=True)
    celery_task_id = models.CharField(max_length=255, blank=True)
    progress = models.FloatField(default=0.0)
    phase = models.CharField(max_length=64, blank=True)
    epoch_metrics = models.JSONField(default=list, blank=True)
    data_snapshot = models.JSONField(default=dict, blank=True)
    message = models.TextField(blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("retrain_model", "Can start and cancel training runs"),
            ("activate_modelversion", "Can activate or roll back model versions"),
        ]

    def __str__(self) -> str:
        return f"Training run #{self.pk} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES

    def finish(self, status: str, *, message: str = "", error: str = "") -> None:
        """Close the run (frees the open slot so that the next run can start)."""
        self.status = status
        self.phase = str(self.Status(status).label).lower()
        self.open_slot = None
        self.finished_at = timezone.now()
        if status == self.Status.SUCCEEDED:
            self.progress = 1.0
        self.message = message or self.message
        self.error = error
        self.save(update_fields=[
            "status", "phase", "open_slot", "finished_at", "progress", "message", "error",
        ])


class ModelVersion(models.Model):
    training_run = models.OneToOneField(
        TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="model_version"
    )
    artifact_path = models.CharField(max_length=500, help_text="Folder in Django's default storage")
    checksum = models.CharField(max_length=64, help_text="sha256 of the artifact's manifest")
    metrics = models.JSONField(default=dict, blank=True)
    data_snapshot = models.JSONField(default=dict, blank=True)
    text_model_id = models.CharField(max_length=255, blank=True)
    n_items = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=False)
    promoted = models.BooleanField(default=False)
    gate_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True),
                name="shop_recs_one_active_version",
            )
        ]

    def __str__(self) -> str:
        return f"Model v{self.pk}" + (" (active)" if self.is_active else "")

    @property
    def label(self) -> str:
        return f"v{self.pk}"

    def activate(self) -> None:
        """Make this the only active version, atomically (rows locked where the database can)."""
        with transaction.atomic():
            locked = list(
                ModelVersion.objects.select_for_update().filter(Q(is_active=True) | Q(pk=self.pk))
            )
            ModelVersion.objects.filter(pk__in=[v.pk for v in locked], is_active=True).exclude(
                pk=self.pk
            ).update(is_active=False)
            now = timezone.now()
            ModelVersion.objects.filter(pk=self.pk).update(is_active=True, activated_at=now)
        self.is_active, self.activated_at = True, now

    @classmethod
    def active(cls) -> ModelVersion | None:
        return cls.objects.filter(is_active=True).first()
