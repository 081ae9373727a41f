"""Admin for the model registry: "Retrain now", live progress, version history, rollback, cancel.

Every power is permission-checked on the server (retrain_model, activate_modelversion), whether it
is reached through the button, an admin action or the URL directly.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from .charts import line_chart
from .jobs import (
    QueueUnavailable,
    cancel_training,
    reap_stale_runs,
    schedule_precompute,
    start_training,
)
from .models import ModelVersion, TrainingRun
from .services import precomputed

RETRAIN_PERM = "shop_recs.retrain_model"
ACTIVATE_PERM = "shop_recs.activate_modelversion"


def run_progress(run: TrainingRun) -> dict:
    version = getattr(run, "model_version", None)
    return {
        "id": run.pk, "status": run.status, "progress": run.progress, "phase": run.phase,
        "open": run.is_open, "message": run.message, "error": run.error,
        "epochs": run.epoch_metrics, "version": version.label if version else None,
        "data": run.data_snapshot,
    }


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    change_list_template = "admin/shop_recs/trainingrun/change_list.html"
    list_display = ["__str__", "status", "progress_bar", "phase", "started_by", "trigger",
                    "created_at", "data_size", "outcome"]
    list_filter = ["status", "trigger"]
    readonly_fields = ["status", "progress_bar", "phase", "started_by", "trigger", "parameters",
                       "data_snapshot", "created_at", "started_at", "finished_at", "heartbeat_at",
                       "celery_task_id", "message", "error", "cancel_requested", "validation_chart"]
    exclude = ["epoch_metrics", "progress"]
    actions = ["cancel_runs"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="progress")
    def progress_bar(self, run: TrainingRun) -> str:
        return format_html('<progress max="100" value="{}"></progress> {}%',
                           round(run.progress * 100), round(run.progress * 100))

    @admin.display(description="data")
    def data_size(self, run: TrainingRun) -> str:
        snap = run.data_snapshot or {}
        if not snap:
            return "—"
        return format_html("{} events · {} shoppers · {} products", snap.get("events", 0),
                           snap.get("users", 0), snap.get("products", 0))

    @admin.display(description="outcome")
    def outcome(self, run: TrainingRun) -> str:
        return run.error or run.message

    @admin.display(description="validation NDCG@10 per epoch")
    def validation_chart(self, run: TrainingRun) -> str:
        return line_chart(
            {"val ndcg@10": [(e["epoch"], e["metrics"].get("ndcg@10", 0.0))
                             for e in run.epoch_metrics if e.get("metrics")]},
            title=f"Training run #{run.pk}", y_label="epoch",
        )

    @admin.action(description="Cancel selected runs")
    def cancel_runs(self, request: HttpRequest, queryset) -> None:
        if not request.user.has_perm(RETRAIN_PERM):
            raise PermissionDenied
        cancelled = sum(cancel_training(run) for run in queryset)
        self.message_user(request, f"Asked {cancelled} open run(s) to stop.", messages.SUCCESS)

    def get_urls(self):
        own = [
            path("retrain/", self.admin_site.admin_view(require_POST(self.retrain_view)),
                 name="shop_recs_trainingrun_retrain"),
            path("<int:pk>/progress/", self.admin_site.admin_view(self.progress_view),
                 name="shop_recs_trainingrun_progress"),
            path("<int:pk>/cancel/", self.admin_site.admin_view(require_POST(self.cancel_view)),
                 name="shop_recs_trainingrun_cancel"),
        ]
        return own + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context=None):
        reap_stale_runs()
        open_run = TrainingRun.objects.filter(open_slot__isnull=False).first()
        last = open_run or TrainingRun.objects.first()
        extra = {
            "can_retrain": request.user.has_perm(RETRAIN_PERM),
            "open_run": open_run,
            "chart_run": last,
            "chart": self.validation_chart(last) if last else "",
        }
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    def retrain_view(self, request: HttpRequest):
        if not request.user.has_perm(RETRAIN_PERM):
            raise PermissionDenied
        try:
            run, created = start_training(user=request.user)
        except QueueUnavailable as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            if created:
                self.message_user(request, f"Training run #{run.pk} started.", messages.SUCCESS)
            else:
                self.message_user(request, f"Training run #{run.pk} is already {run.status}; "
                                  "no second run was started.", messages.WARNING)
        return HttpResponseRedirect(reverse("admin:shop_recs_trainingrun_changelist"))

    def progress_view(self, request: HttpRequest, pk: int):
        if not self.has_view_permission(request):
            raise PermissionDenied
        run = get_object_or_404(TrainingRun.objects.select_related("model_version"), pk=pk)
        return JsonResponse(run_progress(run))

    def cancel_view(self, request: HttpRequest, pk: int):
        if not request.user.has_perm(RETRAIN_PERM):
            raise PermissionDenied
        run = get_object_or_404(TrainingRun, pk=pk)
        if cancel_training(run):
            self.message_user(request, f"Asked run #{run.pk} to stop.", messages.SUCCESS)
        else:
            self.message_user(request, f"Run #{run.pk} is not running.", messages.WARNING)
        return HttpResponseRedirect(reverse("admin:shop_recs_trainingrun_changelist"))


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    change_list_template = "admin/shop_recs/modelversion/change_list.html"
    list_display = ["label", "is_active", "promoted", "ndcg", "recall", "popularity_ndcg",
                    "data_size", "created_at", "gate_reason"]
    list_filter = ["is_active", "promoted"]
    readonly_fields = [f.name for f in ModelVersion._meta.fields]
    actions = ["activate_version"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @staticmethod
    def _metric(version: ModelVersion, model: str, name: str) -> str:
        value = (version.metrics or {}).get(model, {}).get(name)
        return "—" if value is None else f"{value:.4f}"

    @admin.display(description="NDCG@10")
    def ndcg(self, v: ModelVersion) -> str:
        return self._metric(v, "model", "ndcg@10")

    @admin.display(description="Recall@10")
    def recall(self, v: ModelVersion) -> str:
        return self._metric(v, "model", "recall@10")

    @admin.display(description="popularity NDCG@10")
    def popularity_ndcg(self, v: ModelVersion) -> str:
        return self._metric(v, "popularity", "ndcg@10")

    @admin.display(description="data")
    def data_size(self, v: ModelVersion) -> str:
        snap = v.data_snapshot or {}
        return f"{snap.get('events', 0)} events · {snap.get('users', 0)} shoppers · " \
               f"{snap.get('products', 0)} products"

    @admin.action(description="Activate the selected version (roll back / forward)")
    def activate_version(self, request: HttpRequest, queryset) -> None:
        if not request.user.has_perm(ACTIVATE_PERM):
            raise PermissionDenied
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.ERROR)
            return
        version = queryset.get()
        from recsys_core.artifacts import ArtifactError

        from .registry import load_recommender

        try:
            load_recommender(version)
        except ArtifactError as exc:
            self.message_user(request, f"{version.label} cannot be loaded, so it was not "
                              f"activated: {exc}", messages.ERROR)
            return
        version.activate()
        schedule_precompute()
        self.message_user(request, f"{version.label} is now active.", messages.SUCCESS)

    def changelist_view(self, request: HttpRequest, extra_context=None):
        versions = list(ModelVersion.objects.order_by("pk")[:200])
        series = {
            name: [(v.pk, v.metrics[name]["ndcg@10"]) for v in versions
                   if name in (v.metrics or {}) and "ndcg@10" in v.metrics[name]]
            for name in ("model", "popularity", "active")
        }
        chart = line_chart({k: s for k, s in series.items() if s},
                           title="Held-out NDCG@10 by version", y_label="version id")
        return super().changelist_view(request, {**(extra_context or {}), "chart": chart,
                                                  "ahead": precomputed.last_job()})
