"""Show the active model, the open training run and the latest versions."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from shop_recs.jobs import reap_stale_runs
from shop_recs.models import CoPurchase, ModelVersion, TrainingRun
from shop_recs.services.copurchase import last_counted


class Command(BaseCommand):
    help = "Show the active model version, training runs and recent versions with their metrics."

    def handle(self, *args, **options) -> None:
        reap_stale_runs()
        active = ModelVersion.active()
        if active:
            m = active.metrics.get("model", {})
            self.stdout.write(f"Active model: {active.label} (NDCG@10 {m.get('ndcg@10', 0):.4f}, "
                              f"Recall@10 {m.get('recall@10', 0):.4f}), activated "
                              f"{active.activated_at:%Y-%m-%d %H:%M}")
        else:
            self.stdout.write("Active model: none (recommendations use the fallback)")
        counted = last_counted()
        pairs = CoPurchase.objects.count()
        self.stdout.write(f"Co-purchases: {pairs} pairs, last changed {counted:%Y-%m-%d %H:%M}"
                          if counted else
                          "Co-purchases: not counted yet (manage.py recs_co_purchases)")
        open_run = TrainingRun.objects.filter(open_slot__isnull=False).first()
        if open_run:
            self.stdout.write(f"Open run: #{open_run.pk} {open_run.status} "
                              f"{open_run.progress:.0%} {open_run.phase}")
        self.stdout.write("Recent runs:")
        for run in TrainingRun.objects.all()[:5]:
            self.stdout.write(f"  #{run.pk} {run.status:<9} {run.created_at:%Y-%m-%d %H:%M} "
                              f"{run.error or run.message}")
        self.stdout.write("Versions:")
        for v in ModelVersion.objects.all()[:10]:
            m = v.metrics.get("model", {})
            flag = "*" if v.is_active else " "
            self.stdout.write(f" {flag}{v.label:<6} ndcg@10 {m.get('ndcg@10', 0):.4f} "
                              f"recall@10 {m.get('recall@10', 0):.4f}  {v.gate_reason}")
