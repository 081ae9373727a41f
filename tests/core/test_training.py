"""Training: learns the synthetic order, deterministic, resumable, cancellable, augmentable."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from seqrec_fixtures import TEXT_DIM, make_shop

from recsys_core.augment import SimpleAugmenter, make_augmenter, register_augmenter
from recsys_core.baselines import PopularityModel
from recsys_core.config import ModelConfig, TrainConfig
from recsys_core.data import LeaveOneOut
from recsys_core.evaluation import evaluate
from recsys_core.model import score_histories
from recsys_core.training import CheckpointError, TrainingCancelled, train

SHOP = make_shop()
MODEL = ModelConfig(n_items=SHOP.n_items, d_model=32, n_heads=2, n_layers=1, max_len=10,
                    text_dim=TEXT_DIM, dropout=0.1)
# One thread: the test machine's cores are shared, and OpenMP threads that wait on each other
# make a tiny model many times slower.
TRAIN = TrainConfig(epochs=6, batch_size=32, lr=3e-3, patience=50, seed=7, device="cpu",
                    num_threads=1)
BATCHES_PER_EPOCH = -(-sum(len(s) >= 2 for s in SHOP.split.train) // TRAIN.batch_size)


def run(train_config=TRAIN, model_config=MODEL, **kwargs):
    return train(SHOP.split, SHOP.n_items, SHOP.texts, model_config, train_config, **kwargs)


def ndcg_on_test(model, split=SHOP.split):
    model.eval()
    table = model.item_vectors().detach()
    report = evaluate(
        lambda histories, kinds: score_histories(model, table, histories, kinds),
        split.test_history, split.test_kinds, split.test_target, SHOP.n_items,
    )
    return report.metrics["ndcg@10"]


def weights(model):
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def assert_same_weights(first, second):
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


@pytest.mark.parametrize("loss", ["full", "sampled"])
def test_model_clearly_beats_popularity_within_seconds(loss):
    result = run(replace(TRAIN, epochs=12, loss=loss, n_negatives=16))
    popularity = PopularityModel().fit(SHOP.split.train, SHOP.n_items)
    popular = evaluate(popularity, SHOP.split.test_history, SHOP.split.test_kinds,
                       SHOP.split.test_target, SHOP.n_items).metrics["ndcg@10"]
    ours = ndcg_on_test(result.model)
    assert ours > 2 * popular
    assert ours > 0.5  # the next item is fully determined by the last one
    assert result.history[-1]["loss"] < result.history[0]["loss"]


@pytest.mark.parametrize("loss", ["full", "sampled"])
def test_text_match_channel_trains_with_either_loss(loss):
    # The next item always shares the latest item's category, i.e. its text direction.
    config = replace(MODEL, text_match_dim=8)
    result = run(replace(TRAIN, loss=loss, n_negatives=16), config)
    assert ndcg_on_test(result.model) > 0.5
    weights = result.model.text_match_weight.detach()
    assert weights[result.model.item_bucket[1:]].mean() > 0  # text similarity is used, not fought


def test_cpu_training_is_deterministic_under_a_seed():
    first, second = run(), run()
    assert_same_weights(weights(first.model), weights(second.model))
    assert first.history[-1]["loss"] == second.history[-1]["loss"]
    other_seed = run(replace(TRAIN, seed=8))
    assert not torch.equal(other_seed.model.position.weight, first.model.position.weight)


def test_returns_the_weights_of_the_best_validation_epoch(tmp_path):
    result = run(replace(TRAIN, epochs=30, patience=2, lr=2e-2))
    assert result.stopped == "early_stopping"
    assert len(result.history) == result.best_epoch + 2
    best = max(record["val_ndcg@10"] for record in result.history)
    assert result.history[result.best_epoch - 1]["val_ndcg@10"] == best
    valid_as_test = replace(SHOP.split, test_history=SHOP.split.valid_history,
                            test_kinds=SHOP.split.valid_kinds,
                            test_target=SHOP.split.valid_target)
    assert ndcg_on_test(result.model, valid_as_test) == pytest.approx(best)


def test_resume_after_cancellation_gives_the_uninterrupted_result(tmp_path):
    uninterrupted = run(checkpoint_dir=tmp_path / "straight")

    calls = {"n": 0}

    def stop_in_epoch_four() -> bool:
        calls["n"] += 1
        return calls["n"] > 3 * BATCHES_PER_EPOCH + 2

    with pytest.raises(TrainingCancelled, match="epoch 4"):
        run(checkpoint_dir=tmp_path / "resumed", should_stop=stop_in_epoch_four)
    resumed = run(checkpoint_dir=tmp_path / "resumed")
    assert_same_weights(weights(uninterrupted.model), weights(resumed.model))
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in uninterrupted.history]


def test_resuming_an_early_stopped_run_trains_no_further(tmp_path):
    config = replace(TRAIN, epochs=30, patience=2, lr=2e-2)
    first = run(config, checkpoint_dir=tmp_path)
    again = run(config, checkpoint_dir=tmp_path)
    assert first.stopped == again.stopped == "early_stopping"
    assert again.history == first.history
    assert_same_weights(weights(first.model), weights(again.model))


def test_checkpoint_of_another_model_is_refused(tmp_path):
    run(replace(TRAIN, epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match="another model configuration"):
        run(replace(TRAIN, epochs=2), replace(MODEL, d_model=16), checkpoint_dir=tmp_path)


def test_time_budget_stops_training_and_keeps_a_model():
    result = run(replace(TRAIN, epochs=50, max_train_seconds=1e-6))  # any epoch overruns it
    assert result.stopped == "time_budget"
    assert len(result.history) == 1
    assert result.best_epoch == 1


def test_progress_reports_phases_losses_and_validation_metrics():
    reports = []
    run(replace(TRAIN, epochs=3), progress=reports.append)
    phases = [report.phase for report in reports]
    assert phases[0] == "prepare"
    assert {"train", "validate"} <= set(phases)
    fractions = [report.fraction for report in reports]
    assert fractions == sorted(fractions) and fractions[0] >= 0 and fractions[-1] == 1.0
    epoch_ends = [r for r in reports if r.phase == "train" and r.metrics]
    assert [r.epoch for r in epoch_ends] == [1, 2, 3]
    assert all(r.loss > 0 and 0 <= r.metrics["ndcg@10"] <= 1 for r in epoch_ends)


def test_trains_without_validation_cases():
    no_valid = replace(SHOP.split, valid_history=[], valid_kinds=[],
                       valid_target=np.zeros(0, np.int64))
    result = train(no_valid, SHOP.n_items, SHOP.texts, MODEL, replace(TRAIN, epochs=2))
    assert result.stopped == "epochs" and result.best_epoch == 2
    assert "val_ndcg@10" not in result.history[0]


def test_a_100k_item_catalogue_trains_with_sampled_softmax():
    # Memory stays small because no [positions x 100k] logits matrix is ever built; the
    # benchmark reports the peak RSS of this setting.
    n_items = 100_000
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, n_items + 1, size=6) for _ in range(64)]
    kinds = [np.ones(6, dtype=np.int64) for _ in sequences]
    history = [s[:-2] for s in sequences]
    history_kinds = [k[:-2] for k in kinds]
    none = np.zeros(0, np.int64)
    split = LeaveOneOut(
        train=history, train_kinds=history_kinds, valid_history=history,
        valid_kinds=history_kinds, valid_target=np.array([s[-2] for s in sequences]),
        test_history=[], test_kinds=[], test_target=none, valid_users=none, test_users=none,
    )
    texts = rng.normal(size=(n_items, 8)).astype(np.float32)
    config = ModelConfig(n_items=n_items, d_model=16, n_heads=1, n_layers=1, max_len=8,
                         text_dim=8)
    train_config = TrainConfig(epochs=1, batch_size=32, n_negatives=64, device="cpu",
                               num_threads=1)
    assert train_config.uses_sampled_loss(n_items)
    result = train(split, n_items, texts, config, train_config)
    assert np.isfinite(result.history[0]["loss"])
    assert result.model.item_vectors().shape == (n_items + 1, 16)


# ---------------------------------------------------------------- augmentation hook


def test_augmentation_none_is_bit_for_bit_the_baseline():
    baseline = run()
    none = run(replace(TRAIN, augmentation="none", augmentation_prob=0.5))
    never_applied = run(replace(TRAIN, augmentation="simple", augmentation_prob=0.0))
    assert_same_weights(weights(baseline.model), weights(none.model))
    assert_same_weights(weights(baseline.model), weights(never_applied.model))
    applied = run(replace(TRAIN, augmentation="simple", augmentation_prob=0.5))
    assert not torch.equal(applied.model.position.weight, baseline.model.position.weight)


def test_registered_augmenter_is_fitted_on_training_data_and_used():
    seen = {"fit": 0, "augment": 0}

    @register_augmenter("test-counting")
    class Counting:
        def __init__(self, **context):
            assert context["n_items"] == SHOP.n_items

        def fit(self, train_sequences, **context):
            seen["fit"] += len(train_sequences)

        def augment(self, items, kinds, rng):
            seen["augment"] += 1
            return items, kinds, np.zeros(len(items), dtype=bool)

    run(replace(TRAIN, epochs=1, augmentation="test-counting", augmentation_prob=1.0))
    assert seen["fit"] == len(SHOP.split.train)
    assert seen["augment"] == len(SHOP.split.train)


def test_unknown_augmentation_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown augmentation 'nope'.*simple"):
        make_augmenter(replace(TRAIN, augmentation="nope"))


@pytest.mark.parametrize("seed", range(20))
def test_simple_augmentation_crops_masks_or_reorders(seed):
    items = np.arange(1, 11, dtype=np.int64)
    kinds = items + 100
    new_items, new_kinds, context = SimpleAugmenter().augment(
        items, kinds, np.random.default_rng(seed)
    )
    assert len(new_items) == len(new_kinds) == len(context)
    shown = new_items != 0
    assert np.array_equal(new_kinds[shown] - 100, new_items[shown])  # kinds follow items
    if len(new_items) < len(items):  # crop: a contiguous piece
        start = new_items[0] - 1
        assert np.array_equal(new_items, items[start : start + len(new_items)])
        assert not context.any()
    elif context.any():  # mask: hidden items are padding and context only, never the last
        assert np.array_equal(new_items == 0, context) and not context[-1]
        assert np.array_equal(new_items[shown], items[shown])
    else:  # reorder: a permutation of the same items
        assert sorted(new_items.tolist()) == items.tolist()


def test_simple_augmentation_leaves_short_sequences_alone():
    items = np.array([4, 2], dtype=np.int64)
    new_items, _, context = SimpleAugmenter().augment(items, items, np.random.default_rng(0))
    assert np.array_equal(new_items, items) and not context.any()
