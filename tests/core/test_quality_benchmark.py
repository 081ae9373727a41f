"""The quality benchmark runs end to end on a tiny sequence file and ends with its RESULT line."""

import subprocess

import numpy as np
import pytest

from benchmarks import _report, quality


@pytest.fixture
def tiny_files(tmp_path, monkeypatch):
    monkeypatch.setattr(_report, "BENCHMARKS_FILE", tmp_path / "BENCHMARKS.md")
    rng = np.random.default_rng(0)
    lines = []
    for user in range(40):
        aisle = rng.integers(0, 4)
        items = rng.choice(np.arange(1, 9) + 8 * aisle, size=6, replace=False)
        lines.append(f"u{user} " + " ".join(f"p{item}" for item in items))
    (tmp_path / "shop.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_baselines_run_and_the_result_line_comes_last(tiny_files, capsys):
    quality.main(["--sequences", str(tiny_files / "shop.txt"), "--model", "itemknn",
                  "--output-dir", str(tiny_files / "out")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("RESULT dataset=shop model=itemknn ndcg@10=")
    fields = dict(field.split("=") for field in lines[-1].split()[1:])
    assert set(fields) == {"dataset", "model", "ndcg@10", "recall@10", "cold_ndcg@10",
                           "train_s", "peak_rss_mb"}
    assert 0.0 < float(fields["ndcg@10"]) <= 1.0
    recorded = (tiny_files / "BENCHMARKS.md").read_text()
    assert "## Quality on shop (itemknn)" in recorded
    assert "python -m" in recorded and "| itemknn |" in recorded
    assert f"- code: {_report.CODE}" in recorded


def test_a_trained_model_goes_through_the_pipeline(tiny_files, capsys):
    quality.main(["--sequences", str(tiny_files / "shop.txt"), "--model", "id",
                  "--output-dir", str(tiny_files / "out"),
                  "--model-config", '{"d_model": 16, "n_layers": 1, "n_heads": 1}',
                  "--train-config", '{"epochs": 2, "device": "cpu"}'])
    result = capsys.readouterr().out.strip().splitlines()[-1]
    assert result.startswith("RESULT dataset=shop model=id ")
    assert len(list((tiny_files / "out").glob("shop-id-*/manifest.json"))) == 1


def test_text_model_without_texts_is_refused(tiny_files):
    with pytest.raises(SystemExit, match="item texts"):
        quality.main(["--sequences", str(tiny_files / "shop.txt"), "--model", "textknn",
                      "--output-dir", str(tiny_files / "out")])


def _git(directory, *arguments):
    subprocess.run(["git", *arguments], cwd=directory, check=True, capture_output=True)


def test_the_code_line_names_the_commit_and_what_changed_since(tmp_path, monkeypatch):
    monkeypatch.setattr(_report, "REPO_ROOT", tmp_path)
    assert _report.code_description() == "not a git checkout"
    _git(tmp_path, "init", "-q")
    (tmp_path / "model.py").write_text("a = 1\n")
    (tmp_path / "BENCHMARKS.md").write_text("# Benchmarks\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, check=True,
                            capture_output=True, text=True).stdout.strip()
    (tmp_path / "BENCHMARKS.md").write_text("# Benchmarks\n\nappended\n")
    assert _report.code_description() == f"commit {commit}"
    (tmp_path / "model.py").write_text("a = 2\n")
    assert _report.code_description() == (
        f"commit {commit} with uncommitted changes to model.py"
    )


def test_a_change_while_the_benchmark_ran_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(_report, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(_report, "BENCHMARKS_FILE", tmp_path / "BENCHMARKS.md")
    _git(tmp_path, "init", "-q")
    (tmp_path / "model.py").write_text("a = 1\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    monkeypatch.setattr(_report, "CODE", _report.code_description())  # when it started
    _report.publish("Unchanged", ["a"], [[1]], machine="m")
    (tmp_path / "model.py").write_text("a = 2\n")  # edited while it ran
    _report.publish("Changed", ["a"], [[1]], machine="m")
    unchanged, changed = (tmp_path / "BENCHMARKS.md").read_text().split("## Changed")
    assert f"- code: {_report.CODE}\n" in unchanged
    assert (f"- code: {_report.CODE}; CHANGED DURING THE RUN to {_report.CODE} with uncommitted "
            "changes to model.py") in changed
