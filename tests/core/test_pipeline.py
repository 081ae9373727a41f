"""train_version: texts -> split -> training -> evaluation against baselines -> saved version."""

from pathlib import Path

import numpy as np
import pytest
from seqrec_fixtures import make_shop

from recsys_core.artifacts import MANIFEST, load_version
from recsys_core.config import TrainConfig
from recsys_core.data import SequenceData
from recsys_core.pipeline import train_version
from recsys_core.text import TextEncoder

SHOP = make_shop(n_users=200)
WORDS = ["running shoes for trail and road", "stainless steel kitchen knife",
         "organic green tea leaves", "wireless noise cancelling headphones"]
MODEL = {"d_model": 32, "n_heads": 2, "n_layers": 1, "max_len": 10}
TRAIN = TrainConfig(epochs=10, batch_size=32, lr=3e-3, seed=1, device="cpu", num_threads=1)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> TextEncoder:
    return TextEncoder(cache_dir=tmp_path_factory.mktemp("embeddings"))


@pytest.fixture(scope="module")
def data() -> SequenceData:
    texts = [f"{WORDS[SHOP.category[i]]}, model {i}" for i in range(1, SHOP.n_items + 1)]
    return SequenceData(SHOP.data.item_ids, SHOP.data.users, SHOP.data.sequences,
                        SHOP.data.kinds, texts)


@pytest.fixture(scope="module")
def trained(data, encoder, tmp_path_factory):
    reports = []
    output = tmp_path_factory.mktemp("run") / "version"
    result = train_version(data, model_config_overrides=MODEL, train_config=TRAIN,
                           text_encoder=encoder, output_dir=output, progress=reports.append)
    return result, reports, output


def test_model_beats_both_baselines_on_the_test_split(trained):
    result, _, _ = trained
    assert set(result.metrics) == {"model", "popularity", "itemknn"}
    model, popularity = result.metrics["model"], result.metrics["popularity"]
    assert model["ndcg@10"] > 2 * popularity["ndcg@10"]
    assert model["ndcg@10"] > result.metrics["itemknn"]["ndcg@10"]
    assert model["n_cases"] == len(SHOP.split.test_target)
    assert "cold_target" in model["slices"] and "short_history(<=3)" in model["slices"]


def test_the_saved_version_is_the_returned_recommender(trained, encoder):
    result, _, output = trained
    assert (output / MANIFEST).exists()
    loaded = load_version(output)
    history = SHOP.data.item_ids[:2]
    assert loaded.recommend(history, k=5) == result.recommender.recommend(history, k=5)
    assert loaded.text_model_id == encoder.model_id
    assert loaded.version_info["metrics"]["model"]["ndcg@10"] == result.metrics["model"]["ndcg@10"]
    extra = loaded.version_info["extra"]
    assert extra["best_epoch"] == result.best_epoch and len(extra["history"]) >= result.best_epoch
    assert loaded.version_info["model_config"]["use_text"] is True
    # Every kind in the synthetic data is view or purchase: the default is one of them.
    assert loaded.version_info["model_config"]["default_kind"] in (1, 3)


def test_refit_trains_on_validation_events_for_the_chosen_epochs(trained):
    result, _, output = trained
    refit = [record for record in result.history if record.get("refit")]
    assert len(refit) == result.best_epoch
    assert all("val_ndcg@10" not in record for record in refit)
    assert result.history[-1]["seconds"] == pytest.approx(result.train_seconds, abs=0.5)
    assert load_version(output).version_info["extra"]["refit_with_validation"] is True


def test_refit_is_skipped_when_the_time_budget_is_spent(data, tmp_path):
    # A budget any epoch overruns (0.01 s was not spent by one epoch on a fast machine).
    budget = TrainConfig(**{**TRAIN.to_dict(), "max_train_seconds": 1e-6})
    result = train_version(data, model_config_overrides=MODEL, train_config=budget,
                           text_encoder=None, output_dir=tmp_path / "v", baseline_scores=False)
    assert len(result.history) == 1 and not result.history[0].get("refit")
    assert result.recommender.version_info["extra"]["refit_with_validation"] is False


def test_text_prior_is_the_grid_weight_best_on_validation(data, encoder, tmp_path, monkeypatch):
    """The prior is chosen on validation cases only, and the saved model carries it."""
    from recsys_core import pipeline

    seen: list[tuple[float, int]] = []
    real_evaluate = pipeline.evaluate

    def spy(score_fn, histories, kinds, targets, n_items, **kwargs):
        report = real_evaluate(score_fn, histories, kinds, targets, n_items, **kwargs)
        seen.append((report.metrics["ndcg@10"], len(targets)))
        return report

    monkeypatch.setattr(pipeline, "evaluate", spy)
    config = TrainConfig(**{**TRAIN.to_dict(), "text_prior_grid": [0.0, 1.0, 3.0]})
    result = train_version(data, model_config_overrides={**MODEL, "text_match_dim": 8},
                           train_config=config, text_encoder=encoder, output_dir=tmp_path / "v",
                           baseline_scores=False, refit=False)
    calibration = seen[:3]  # one evaluation per weight, then the test evaluation
    assert all(n == len(SHOP.split.valid_target) for _, n in calibration)
    best = [0.0, 1.0, 3.0][max(range(3), key=lambda i: (calibration[i][0], -i))]
    assert result.recommender.model.config.text_prior == best
    assert load_version(tmp_path / "v").model.config.text_prior == best


def test_without_a_grid_or_a_text_match_channel_there_is_no_prior(data, encoder, tmp_path):
    off = TrainConfig(**{**TRAIN.to_dict(), "text_prior_grid": []})
    result = train_version(data, model_config_overrides={**MODEL, "text_match_dim": 8},
                           train_config=off, text_encoder=encoder, output_dir=tmp_path / "a",
                           baseline_scores=False, refit=False)
    assert result.recommender.model.config.text_prior == 0.0
    result = train_version(data, model_config_overrides=MODEL, train_config=TRAIN,
                           text_encoder=encoder, output_dir=tmp_path / "b",
                           baseline_scores=False, refit=False)
    assert result.recommender.model.config.text_prior == 0.0


def test_progress_covers_every_phase_in_order(trained):
    _, reports, _ = trained
    phases = [r.phase for r in reports]
    order = ["embed", "prepare", "train", "refit", "evaluate", "save", "done"]
    assert [p for p in dict.fromkeys(phases) if p in order] == order
    fractions = [r.fraction for r in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert reports[-1].metrics["ndcg@10"] > 0


def test_rivals_are_evaluated_on_the_same_cases(trained, data, tmp_path):
    result, _, _ = trained
    rerun = train_version(data, model_config_overrides={**MODEL, "use_text": False},
                          train_config=TRAIN, text_encoder=None, output_dir=tmp_path / "v2",
                          baseline_scores=False, compare_with={"active": result.recommender})
    assert set(rerun.metrics) == {"model", "active"}
    assert rerun.metrics["active"]["ndcg@10"] == pytest.approx(result.metrics["model"]["ndcg@10"])
    assert rerun.recommender.text_embeddings is None


def test_bad_requests_are_clear_errors(data, tmp_path: Path):
    with pytest.raises(ValueError, match="use_text=True needs item texts"):
        train_version(data, model_config_overrides={"use_text": True}, train_config=TRAIN,
                      text_encoder=None, output_dir=tmp_path / "a")
    with pytest.raises(ValueError, match="n_items comes from the data"):
        train_version(data, model_config_overrides={"n_items": 3}, train_config=TRAIN,
                      text_encoder=None, output_dir=tmp_path / "b")
    tiny = SequenceData(["a", "b"], ["u"], [np.array([1, 2])], [np.array([1, 1])])
    with pytest.raises(ValueError, match="not enough data to evaluate"):
        train_version(tiny, train_config=TRAIN, text_encoder=None, output_dir=tmp_path / "c")
    assert not any(tmp_path.iterdir())
