"""SeqRecModel and its configuration: item table, causality, padding, side vectors."""

import dataclasses

import numpy as np
import pytest
import torch

from recsys_core.config import ModelConfig, TrainConfig
from recsys_core.model import SeqRecModel, pad_histories, score_histories


def small_config(**overrides) -> ModelConfig:
    values = {"n_items": 12, "d_model": 16, "n_heads": 2, "n_layers": 1, "max_len": 6,
              "text_dim": 8, "dropout": 0.0}
    return ModelConfig(**{**values, **overrides})


def text_matrix(n_items: int = 12, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n_items, dim)).astype(np.float32)


def test_item_vector_is_id_embedding_plus_projected_text():
    torch.manual_seed(0)
    texts = text_matrix()
    model = SeqRecModel(small_config(), texts).eval()
    table = model.item_vectors()
    expected = model.item_id.weight[1:] + model.text_proj(torch.from_numpy(texts))
    torch.testing.assert_close(table[1:], expected)
    assert torch.count_nonzero(table[0]) == 0  # padding row
    torch.testing.assert_close(model.item_vectors(torch.tensor([3, 5])), table[[3, 5]])


def test_id_only_and_text_only_models_use_one_part():
    torch.manual_seed(0)
    id_only = SeqRecModel(small_config(use_text=False))
    torch.testing.assert_close(id_only.item_vectors()[1:], id_only.item_id.weight[1:])
    texts = text_matrix()
    text_only = SeqRecModel(small_config(use_id=False), texts)
    assert text_only.item_id is None
    torch.testing.assert_close(
        text_only.item_vectors()[1:], text_only.text_proj(torch.from_numpy(texts))
    )


def test_text_match_scores_weighted_cosine_of_the_latest_items_text():
    torch.manual_seed(0)
    texts = text_matrix(dim=8)
    model = SeqRecModel(small_config(text_match_dim=4), texts).eval()
    codes = model.text_codes
    assert torch.count_nonzero(codes[0]) == 0
    torch.testing.assert_close(codes[1:].norm(dim=1), torch.ones(12))
    basis = model.text_basis
    torch.testing.assert_close(basis.t() @ basis, torch.eye(4), atol=1e-4, rtol=0)
    with torch.no_grad():
        model.text_match_weight.fill_(2.0)
    everything = model.text_match(torch.tensor([3, 7]))
    torch.testing.assert_close(everything, 2.0 * codes[[3, 7]] @ codes.t())
    shared = model.text_match(torch.tensor([3, 7]), torch.tensor([5, 1]))
    torch.testing.assert_close(shared, everything[:, [5, 1]])
    per_row = model.text_match(torch.tensor([3, 7]), torch.tensor([[5], [1]]))
    torch.testing.assert_close(per_row[:, 0], everything[[0, 1], [5, 1]])
    # Each candidate's weight is the one of its popularity bucket, log2(count + 1).
    counts = np.array([0, 0, 1, 2, 3, 4, 7, 8, 100, 0, 1, 0, 0])
    model.set_item_counts(counts)
    assert model.item_bucket.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 6, 0, 1, 0, 0]
    with torch.no_grad():
        model.text_match_weight.copy_(torch.arange(1.0, 9.0))
    bucketed = model.text_match(torch.tensor([3, 7]))
    torch.testing.assert_close(bucketed, (codes[[3, 7]] @ codes.t()) * (model.item_bucket + 1.0))
    with torch.no_grad():
        model.text_match_weight.fill_(2.0)
    # The channel enters the scores: they differ exactly by the match term.
    table = model.item_vectors().detach()
    with_match = score_histories(model, table, [np.array([4, 3])], [None])
    with torch.no_grad():
        model.text_match_weight.fill_(0.0)
    without = score_histories(model, table, [np.array([4, 3])], [None])
    torch.testing.assert_close((with_match - without)[0, 1:], everything[0, 1:])


def test_sparse_side_vectors_give_the_same_table_as_dense():
    # Attribute multi-hots are mostly zeros: the model multiplies them as a sparse matrix.
    rng = np.random.default_rng(1)
    side = np.zeros((12, 40), dtype=np.float32)
    side[np.arange(12), rng.integers(40, size=12)] = 1.0
    model = SeqRecModel(small_config(text_dim=40, use_id=False), side)
    table = model.item_vectors()
    dense = model.text_proj(torch.from_numpy(side))
    torch.testing.assert_close(table[1:], dense)
    index = torch.tensor([[1, 2, 0], [12, 5, 5]])
    torch.testing.assert_close(model.item_vectors(index), table[index])
    table.sum().backward()  # gradients flow through the sparse product
    assert model.text_proj.weight.grad is not None
    assert model.text_proj.weight.grad.abs().sum() > 0


def test_a_later_event_never_changes_earlier_states():
    torch.manual_seed(0)
    model = SeqRecModel(small_config(), text_matrix()).eval()
    table = model.item_vectors().detach()
    kinds = torch.ones(1, 5, dtype=torch.long)
    first = model.sequence_states(table[torch.tensor([[1, 2, 3, 4, 5]])], kinds)
    second = model.sequence_states(table[torch.tensor([[1, 2, 3, 9, 7]])], kinds)
    torch.testing.assert_close(first[:, :3], second[:, :3])
    assert not torch.allclose(first[:, 3:], second[:, 3:])


def test_right_padding_does_not_change_a_users_vector():
    torch.manual_seed(0)
    model = SeqRecModel(small_config(), text_matrix()).eval()
    histories = [np.array([4, 2, 7]), np.array([1, 2, 3, 4, 5])]
    kinds = [np.array([1, 3, 1]), np.ones(5, dtype=np.int64)]
    table = model.item_vectors().detach()
    together = score_histories(model, table, histories, kinds)
    alone = score_histories(model, table, histories[:1], kinds[:1])
    torch.testing.assert_close(together[:1], alone)
    assert together[0, 0] == -torch.inf


def test_event_kind_changes_the_prediction():
    torch.manual_seed(0)
    model = SeqRecModel(small_config(), text_matrix()).eval()
    table = model.item_vectors().detach()
    viewed = score_histories(model, table, [np.array([3])], [np.array([1])])
    bought = score_histories(model, table, [np.array([3])], [np.array([3])])
    assert not torch.allclose(viewed, bought)


def test_pad_histories_keeps_the_latest_events_and_their_kinds():
    items, kinds, lengths = pad_histories(
        [np.arange(1, 9), np.array([5])], [np.arange(10, 18), None], max_len=4, default_kind=2
    )
    assert items.tolist() == [[5, 6, 7, 8], [5, 0, 0, 0]]
    assert kinds.tolist() == [[14, 15, 16, 17], [2, 0, 0, 0]]
    assert lengths.tolist() == [4, 1]


def test_pad_histories_rejects_kinds_of_another_length():
    with pytest.raises(ValueError, match="3 items but 2 kinds"):
        pad_histories([np.array([1, 2, 3])], [np.array([1, 1])], max_len=5, default_kind=1)


def test_side_matrix_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="shape"):
        SeqRecModel(small_config(), text_matrix(n_items=11))
    bad = text_matrix()
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SeqRecModel(small_config(), bad)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("n_heads", 3, "divisible"),
        ("use_text", False, "at least one"),
        ("dropout", 1.0, "dropout"),
        ("n_items", 0, "n_items"),
        ("text_match_dim", 500, "text_match_dim"),
    ],
)
def test_model_config_rejects_impossible_values(field, value, message):
    values = {"n_items": 12, "d_model": 16, "n_heads": 2}
    if field == "use_text":
        values["use_id"] = False
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**values, field: value})


def test_text_settings_are_inert_in_an_id_only_model():
    # One preset serves both arms of the text ablation.
    torch.manual_seed(0)
    plain = SeqRecModel(small_config(use_text=False)).train()
    torch.manual_seed(0)
    with_text_settings = SeqRecModel(
        small_config(use_text=False, text_match_dim=4, id_dropout=0.5)
    ).train()
    assert with_text_settings.text_match_weight is None
    torch.testing.assert_close(with_text_settings.item_vectors(), plain.item_vectors())


def test_configs_round_trip_through_json_and_refuse_unknown_keys():
    model_config = small_config(id_dropout=0.1)
    train_config = TrainConfig(epochs=3, loss="sampled", max_train_seconds=9.5)
    assert ModelConfig.from_dict(model_config.to_dict()) == model_config
    assert TrainConfig.from_dict(train_config.to_dict()) == train_config
    with pytest.raises(ValueError, match="unknown TrainConfig field.*epoch"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(loss="bce")  # type: ignore[arg-type]


def test_auto_loss_switches_to_sampled_for_large_catalogues():
    config = TrainConfig(loss="auto", sampled_above_items=1000)
    assert not config.uses_sampled_loss(1000)
    assert config.uses_sampled_loss(1001)
    assert dataclasses.replace(config, loss="full").uses_sampled_loss(10**6) is False


def test_text_match_works_on_a_catalogue_smaller_than_its_dimensions():
    """A shop with 5 products and a 16-dimension text-match channel still gets unit codes."""
    config = small_config(n_items=5, text_dim=32, text_match_dim=16)
    texts = np.random.default_rng(0).normal(size=(5, config.text_dim)).astype(np.float32)
    model = SeqRecModel(config, texts)
    norms = model.text_codes[1:].norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(5))
    assert model.text_match(torch.tensor([2])).shape == (1, 6)
