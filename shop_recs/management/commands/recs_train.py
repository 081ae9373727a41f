"""Start a training run; with --wait, follow it with a progress bar until it ends."""

from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand, CommandError

from shop_recs.jobs import QueueUnavailable, start_training
from shop_recs.models import ModelVersion, TrainingRun


class Command(BaseCommand):
    help = "Queue a training run of the recommender (use --wait to follow its progress)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--wait", action="store_true", help="follow the run until it ends")
        parser.add_argument("--param", action="append", default=[], metavar="KEY=JSON",
                            help="training parameter for this run, e.g. --param epochs=10")
        parser.add_argument("--if-no-active-model", action="store_true",
                            help="do nothing when a model is already active (demo set-up)")

    def handle(self, *args, wait: bool, param: list[str], if_no_active_model: bool,
               **options) -> None:
        if if_no_active_model and ModelVersion.active() is not None:
            self.stdout.write(f"{ModelVersion.active().label} is active; not training.")
            return
        parameters = {}
        for item in param:
            key, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--param {item!r}: expected KEY=VALUE")
            try:
                parameters[key] = json.loads(value)
            except json.JSONDecodeError:
                parameters[key] = value
        try:
            run, created = start_training(parameters=parameters, trigger="command")
        except QueueUnavailable as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Training run #{run.pk} {'queued' if created else 'already open'}.")
        if wait:
            self._follow(run)

    def _follow(self, run: TrainingRun) -> None:
        from tqdm import tqdm

        with tqdm(total=100, unit="%", desc=f"run #{run.pk}", file=self.stdout._out) as bar:
            while True:
                run.refresh_from_db()
                bar.n = round(run.progress * 100)
                bar.set_postfix_str(run.phase[:40])
                bar.refresh()
                if not run.is_open:
                    break
                time.sleep(1)
        if run.status == TrainingRun.Status.SUCCEEDED:
            self.stdout.write(self.style.SUCCESS(f"Run #{run.pk} succeeded: {run.message}"))
        else:
            raise CommandError(f"Run #{run.pk} {run.status}: {run.error or run.message}")
