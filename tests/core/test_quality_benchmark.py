"""The quality benchmark runs end to end on a tiny sequence file and ends with its RESULT line."""

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
