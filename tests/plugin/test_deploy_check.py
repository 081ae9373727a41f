"""`manage.py check --deploy` passes on the demo's production settings."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_check(secret: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SECRET_KEY": secret, "DJANGO_ALLOWED_HOSTS": "shop.example",
           "DJANGO_SETTINGS_MODULE": "demo.settings_production"}
    env.pop("DATABASE_URL", None)
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level",
                           "WARNING"], cwd=ROOT, env=env, capture_output=True, text=True)


def test_deploy_check_passes_with_a_real_secret() -> None:
    result = run_check("k2#Vq9!mZr8@Lp4^Xs7&Tb1*Hn6(Wd3)Yf5_Gc0+Je2-Ua9=Ro8%Ki4")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_the_demo_secret() -> None:
    result = run_check("short")
    assert result.returncode != 0 and "DJANGO_SECRET_KEY" in result.stderr
