"""The wheel is what a shop installs: it must carry the plugin, its migrations and templates."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=ROOT, check=True, capture_output=True,
    )
    (wheel,) = out.glob("shop_recs-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_wheel_ships_the_three_packages(wheel_names: set[str]) -> None:
    for module in ["shop_recs/apps.py", "recsys_core/__init__.py", "tasks/celery.py"]:
        assert module in wheel_names


def test_wheel_ships_migrations_and_templates(wheel_names: set[str]) -> None:
    migrations = {n for n in wheel_names if n.startswith("shop_recs/migrations/0")}
    templates = {n for n in wheel_names if n.startswith("shop_recs/templates/")}
    source_templates = {
        "shop_recs/templates/" + str(p.relative_to(ROOT / "templates"))
        for p in (ROOT / "templates").rglob("*.html")
    }
    source_migrations = {
        "shop_recs/migrations/" + p.name for p in (ROOT / "shop_recs/migrations").glob("0*.py")
    }
    assert source_migrations and migrations == source_migrations
    assert source_templates and templates == source_templates


def test_wheel_leaves_out_the_demo_and_tests(wheel_names: set[str]) -> None:
    assert not any(n.startswith(("demo/", "tests/", "benchmarks/")) for n in wheel_names)
