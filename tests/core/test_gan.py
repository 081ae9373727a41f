"""Generator and GAN augmentation: what they generate, what they leave alone, what they learn."""

from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import torch
from seqrec_fixtures import TEXT_DIM, make_shop

from recsys_core.augment import make_augmenter, register_augmenter
from recsys_core.augment.gan import GanAugmenter
from recsys_core.augment.generator import GeneratorAugmenter, GeneratorSettings
from recsys_core.config import ModelConfig, TrainConfig
from recsys_core.data import leave_one_out
from recsys_core.training import TrainingCancelled, train

# Small enough to fit in a second or two on a shared CPU, big enough to learn the chains.
TINY = GeneratorSettings(
    d_model=16,
    n_layers=1,
    n_heads=1,
    dropout=0.0,
    batch_size=64,
    lr=3e-3,
    pretrain_epochs=3,
    held_out_share=0.2,
    probe_steps=5,
    adversarial_steps=10,
    discriminator_warmup_steps=5,
    pair_batch_size=32,
)
TRAIN = TrainConfig(epochs=2, batch_size=32, lr=3e-3, patience=50, seed=7, device="cpu",
                    num_threads=1)

# Register tiny-settings variants once, so that train() can build them by name.
register_augmenter("test-gan-tiny")(partial(GanAugmenter, settings=TINY))
register_augmenter("test-generator-tiny")(partial(GeneratorAugmenter, settings=TINY))


@pytest.fixture(autouse=True)
def _one_thread():
    """OpenMP threads waiting on each other make tiny models slow on a shared CPU."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def shop_with_held_out_only_items():
    """The synthetic shop, where the cold items become some shoppers' validation/test items.

    Those items never occur in a training sequence, but their texts resemble warm items of
    their category, so a generator that ranked by item vectors alone could pick them.
    """
    shop = make_shop(n_users=160, seed=3)
    rng = np.random.default_rng(0)
    sequences, kinds = [], []
    for user, (items, item_kinds) in enumerate(
        zip(shop.data.sequences, shop.data.kinds, strict=True)
    ):
        if user % 4 == 0:
            items = np.concatenate([items, rng.choice(shop.cold, size=2, replace=False)])
            item_kinds = np.concatenate([item_kinds, item_kinds[-2:]])
        sequences.append(items)
        kinds.append(item_kinds)
    data = replace(shop.data, sequences=sequences, kinds=kinds)
    return data, leave_one_out(data), shop.texts, shop.cold


def fitted(cls=GeneratorAugmenter, settings=TINY, seed=7, data=None, **context):
    data, split, texts, _ = data or shop_with_held_out_only_items()
    augmenter = cls(
        train_config=replace(TRAIN, seed=seed),
        n_items=data.n_items,
        model_config=ModelConfig(n_items=data.n_items, text_dim=TEXT_DIM),
        text_embeddings=texts,
        device="cpu",
        settings=settings,
        **context,
    )
    augmenter.fit(split.train, train_kinds=split.train_kinds)
    return augmenter, split


def short_sequences(split, short_max=TINY.short_max):
    return [(items, kinds) for items, kinds in zip(split.train, split.train_kinds, strict=True)
            if len(items) <= short_max]


# ---------------------------------------------------------------- what is generated


def test_generated_items_are_catalogue_items_seen_in_training_only():
    data, split, texts, held_out_only = shop_with_held_out_only_items()
    training_items = set(np.concatenate(split.train).tolist())
    held_out_items = set(split.valid_target.tolist()) | set(split.test_target.tolist())
    assert set(held_out_only.tolist()) <= held_out_items - training_items  # the trap is set
    augmenter, _ = fitted(data=(data, split, texts, held_out_only))
    assert augmenter.prefixes, "no short sequence was augmented"
    generated = [augmenter.prefixes[key] for key in augmenter.prefixes]
    # Many more draws than the cached prefixes, so that a rare forbidden item would show up.
    seeds = torch.from_numpy(np.stack([items[-1:] for items in split.train] * 10))
    kinds = torch.ones_like(seeds)
    drawn, _ = augmenter.generator.rollout(seeds, kinds, torch.Generator().manual_seed(0))
    everything = np.concatenate([*generated, drawn.numpy().ravel()])
    assert everything.min() >= 1 and everything.max() <= data.n_items
    assert set(everything.tolist()) <= training_items
    assert not set(everything.tolist()) & set(held_out_only.tolist())


def test_prefixes_never_repeat_an_item_or_the_history():
    augmenter, split = fitted()
    for items, _ in short_sequences(split):
        prefix = augmenter.prefixes[items.tobytes()]
        assert len(prefix) == TINY.n_generated
        assert len(set(prefix.tolist())) == len(prefix)
        assert not set(prefix.tolist()) & set(items.tolist())


def test_short_history_gets_a_context_only_prefix_and_keeps_its_own_items():
    augmenter, split = fitted()
    items, kinds = short_sequences(split)[0]
    new_items, new_kinds, context = augmenter.augment(items, kinds, np.random.default_rng(0))
    k = TINY.n_generated
    assert np.array_equal(new_items[k:], items) and np.array_equal(new_kinds[k:], kinds)
    assert np.array_equal(new_items[:k], augmenter.prefixes[items.tobytes()])
    assert context.tolist() == [True] * k + [False] * len(items)
    assert (new_kinds[:k] == augmenter.model_config.default_kind).all()


def test_long_histories_are_left_untouched():
    augmenter, split = fitted()
    long = [(i, k) for i, k in zip(split.train, split.train_kinds, strict=True)
            if len(i) > TINY.short_max]
    assert long
    for items, kinds in long:
        new_items, new_kinds, context = augmenter.augment(items, kinds, np.random.default_rng(0))
        assert new_items is items and new_kinds is kinds
        assert not context.any() and len(context) == len(items)


def test_a_short_history_never_seen_in_training_is_left_untouched():
    augmenter, _ = fitted()
    items = np.array([3, 1], dtype=np.int64)  # the chains only ever go up
    assert items.tobytes() not in augmenter.prefixes
    new_items, _, context = augmenter.augment(items, np.ones(2, dtype=np.int64),
                                              np.random.default_rng(0))
    assert new_items is items and not context.any()


def test_fit_is_deterministic_under_a_seed_and_changes_with_it():
    first, _ = fitted(seed=3)
    second, _ = fitted(seed=3)
    other, _ = fitted(seed=4)
    assert first.prefixes.keys() == second.prefixes.keys()
    assert all(np.array_equal(first.prefixes[key], second.prefixes[key]) for key in first.prefixes)
    assert any(not np.array_equal(first.prefixes[key], other.prefixes[key])
               for key in first.prefixes)


# ---------------------------------------------------------------- inside training


def run_training(augmentation, probability):
    shop = make_shop()
    model = ModelConfig(n_items=shop.n_items, d_model=16, n_heads=1, n_layers=1, max_len=12,
                        text_dim=TEXT_DIM, dropout=0.1)
    config = replace(TRAIN, augmentation=augmentation, augmentation_prob=probability)
    return train(shop.split, shop.n_items, shop.texts, model, config).model.state_dict()


def test_augmentation_off_is_bit_for_bit_the_baseline_under_a_seed():
    baseline = run_training("none", 0.0)
    for name in ("test-generator-tiny", "test-gan-tiny"):
        fitted_but_unused = run_training(name, 0.0)  # the fit must not disturb training's RNG
        for key, tensor in baseline.items():
            assert torch.equal(tensor, fitted_but_unused[key]), (name, key)
    used = run_training("test-gan-tiny", 1.0)
    assert not torch.equal(used["position.weight"], baseline["position.weight"])


def test_gan_is_found_by_name_and_reports_phases_and_costs():
    shop = make_shop()
    reports = []
    augmenter = make_augmenter(
        replace(TRAIN, augmentation="gan"),
        n_items=shop.n_items,
        model_config=ModelConfig(n_items=shop.n_items, text_dim=TEXT_DIM),
        text_embeddings=shop.texts,
        device=torch.device("cpu"),
        progress=reports.append,
        settings=TINY,  # the defaults are sized for real data
    )
    assert isinstance(augmenter, GanAugmenter)
    augmenter.fit(shop.split.train, train_kinds=shop.split.train_kinds)
    phases = [report.phase for report in reports]
    for phase in ("generator pre-training", "discriminator warm-up", "adversarial training",
                  "realism probe", "generating prefixes", "done"):
        assert f"augmentation: {phase}" in phases
    assert phases[-1] == "augmentation: done"
    done = reports[-1].metrics
    for key in ("fit_s", "pretrain_s", "adversarial_s", "peak_rss_mb", "generator_params",
                "adv_disc_acc_heldout", "probe_disc_acc_heldout", "generated_head_share",
                "real_head_share"):
        assert key in done, key
    assert done["fit_s"] >= done["pretrain_s"] + done["adversarial_s"] > 0
    assert 0.0 <= done["generated_head_share"] <= 1.0


def test_cancellation_during_augmentation_stops_the_fit():
    with pytest.raises(TrainingCancelled):
        fitted(should_stop=lambda: True)


# ---------------------------------------------------------------- adversarial learning


def test_short_adversarial_run_teaches_the_discriminator_and_moves_the_generator():
    # A barely trained generator against real chains: a discriminator that learns anything
    # must beat chance on held-out users.
    weak = replace(TINY, pretrain_epochs=1, discriminator_warmup_steps=20, adversarial_steps=30,
                   discriminator_lr=3e-3, probe_steps=0)
    gan, _ = fitted(GanAugmenter, settings=weak)
    report = gan.report
    assert abs(report["disc_acc_heldout_start"] - 0.5) <= 0.2  # untrained: about chance
    assert report["adv_disc_acc_heldout"] >= report["disc_acc_heldout_start"] + 0.2
    # The same seed without the adversarial phase gives the pre-trained generator: the
    # adversarial updates must have changed it.
    mle, _ = fitted(GeneratorAugmenter, settings=weak)
    gan_weights, mle_weights = gan.generator.model.state_dict(), mle.generator.model.state_dict()
    assert any(not torch.equal(gan_weights[name], mle_weights[name]) for name in gan_weights)


def test_settings_refuse_nonsense():
    with pytest.raises(ValueError, match="short_max"):
        GeneratorSettings(short_max=0)
    with pytest.raises(ValueError, match="held_out_share"):
        GeneratorSettings(held_out_share=1.0)
    with pytest.raises(ValueError, match="temperature"):
        GeneratorSettings(temperature=0.0)


def test_model_config_must_match_the_catalogue():
    with pytest.raises(ValueError, match="n_items"):
        GeneratorAugmenter(train_config=TRAIN, n_items=2,
                           model_config=ModelConfig(n_items=3, use_text=False))
