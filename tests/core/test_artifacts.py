"""Model versions on disk: round trip, checksums, refusal of tampered or mismatched files."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from seqrec_fixtures import TEXT_DIM, make_shop

from recsys_core.artifacts import (
    CONFIG,
    MANIFEST,
    WEIGHTS,
    ArtifactError,
    load_version,
    save_version,
)
from recsys_core.config import ModelConfig, TrainConfig
from recsys_core.data import item_counts
from recsys_core.inference import Recommender
from recsys_core.model import SeqRecModel

SHOP = make_shop(n_users=40)
CONFIG_ = ModelConfig(n_items=SHOP.n_items, d_model=16, n_heads=2, n_layers=1, max_len=8,
                      text_dim=TEXT_DIM)
COUNTS = item_counts(SHOP.data.sequences, SHOP.n_items)


def model(config: ModelConfig = CONFIG_) -> SeqRecModel:
    torch.manual_seed(0)
    return SeqRecModel(config, SHOP.texts if config.use_text else None).eval()


def save(directory: Path, config: ModelConfig = CONFIG_, **overrides) -> dict:
    arguments = {
        "model": model(config), "model_config": config, "train_config": TrainConfig(epochs=3),
        "item_ids": SHOP.data.item_ids, "metrics": {"model": {"ndcg@10": 0.25}},
        "text_model_id": "test-encoder@123", "text_embeddings": SHOP.texts,
        "extra": {"best_epoch": 2}, "item_counts": COUNTS,
    }
    return save_version(directory, **{**arguments, **overrides})


def rewrite_manifest(directory: Path) -> None:
    """Re-sign every file: what an attacker who can edit the manifest too would do."""
    import hashlib

    manifest = json.loads((directory / MANIFEST).read_text())
    for name in manifest["files"]:
        data = (directory / name).read_bytes()
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (directory / MANIFEST).write_text(json.dumps(manifest))


def test_round_trip_serves_exactly_what_was_saved(tmp_path):
    directory = tmp_path / "v1"
    manifest = save(directory)
    loaded = load_version(directory)
    in_memory = Recommender(model(), SHOP.data.item_ids, item_counts=COUNTS)
    history = SHOP.data.item_ids[:3]
    assert loaded.recommend(history, k=5) == in_memory.recommend(history, k=5)
    np.testing.assert_array_equal(loaded.item_vectors(), in_memory.item_vectors())
    np.testing.assert_array_equal(loaded.text_embeddings, SHOP.texts)
    assert loaded.item_ids == SHOP.data.item_ids
    assert loaded.text_model_id == "test-encoder@123"
    assert loaded.version_info["metrics"] == {"model": {"ndcg@10": 0.25}}
    assert loaded.version_info["extra"] == {"best_epoch": 2}
    assert ModelConfig.from_dict(loaded.version_info["model_config"]) == CONFIG_
    assert manifest["n_items"] == SHOP.n_items
    assert sorted(p.name for p in directory.iterdir()) == sorted([*manifest["files"], MANIFEST])
    assert [p.name for p in tmp_path.iterdir()] == ["v1"]  # no temporary directory left


def test_text_match_channel_survives_the_round_trip(tmp_path):
    config = ModelConfig(**{**CONFIG_.to_dict(), "text_match_dim": 4})
    save(tmp_path / "v", config=config)
    loaded = load_version(tmp_path / "v")
    in_memory = Recommender(model(config), SHOP.data.item_ids, item_counts=COUNTS)
    history = SHOP.data.item_ids[3:6]
    assert loaded.recommend(history, k=8) == in_memory.recommend(history, k=8)


def test_id_only_model_keeps_text_embeddings_for_search(tmp_path):
    config = ModelConfig(**{**CONFIG_.to_dict(), "use_text": False})
    save(tmp_path / "v", config=config)
    loaded = load_version(tmp_path / "v")
    np.testing.assert_array_equal(loaded.text_embeddings, SHOP.texts)


def test_a_modified_weight_file_is_refused(tmp_path):
    directory = tmp_path / "v"
    save(directory)
    data = bytearray((directory / WEIGHTS).read_bytes())
    data[-5] ^= 0xFF
    (directory / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="weights.safetensors: sha256 does not match"):
        load_version(directory)


def test_a_resigned_manifest_is_caught_by_the_registered_checksum(tmp_path):
    import hashlib

    directory = tmp_path / "v"
    save(directory)
    registered = hashlib.sha256((directory / MANIFEST).read_bytes()).hexdigest()
    assert load_version(directory, manifest_sha256=registered).item_ids == SHOP.data.item_ids
    metrics = directory / "metrics.json"
    metrics.write_text(json.dumps({"model": {"ndcg@10": 0.99}}))
    rewrite_manifest(directory)
    with pytest.raises(ArtifactError, match="differs from the registered one"):
        load_version(directory, manifest_sha256=registered)


def test_weights_that_do_not_fit_the_configuration_are_refused(tmp_path):
    directory = tmp_path / "v"
    save(directory)
    config = json.loads((directory / CONFIG).read_text())
    config["model_config"]["d_model"] = 32
    (directory / CONFIG).write_text(json.dumps(config))
    rewrite_manifest(directory)
    with pytest.raises(ArtifactError, match=r"tensor .* is torch.float32 \(\d+, 16\).*32"):
        load_version(directory)


def test_swapped_text_embeddings_are_refused(tmp_path):
    directory = tmp_path / "v"
    save(directory)
    tensors = load_file(directory / WEIGHTS)
    tensors["text_embeddings"][1:] = torch.flip(tensors["text_embeddings"][1:], dims=[0])
    save_file(tensors, directory / WEIGHTS)
    rewrite_manifest(directory)
    with pytest.raises(ArtifactError, match="text embeddings do not match"):
        load_version(directory)


def test_a_pickle_in_place_of_the_weights_is_never_unpickled(tmp_path):
    directory = tmp_path / "v"
    save(directory)

    class Boom:
        def __reduce__(self):
            return (Path(tmp_path / "pwned").touch, ())

    (directory / WEIGHTS).write_bytes(pickle.dumps(Boom()))
    rewrite_manifest(directory)
    with pytest.raises(ArtifactError, match="unreadable safetensors"):
        load_version(directory)
    assert not (tmp_path / "pwned").exists()


def test_missing_files_and_foreign_directories_are_clear_errors(tmp_path):
    with pytest.raises(ArtifactError, match="not a model version directory"):
        load_version(tmp_path)
    directory = tmp_path / "v"
    save(directory)
    (directory / "items.json").unlink()
    with pytest.raises(ArtifactError, match="items.json: file missing"):
        load_version(directory)


def test_item_ids_must_match_the_catalogue_size(tmp_path):
    directory = tmp_path / "v"
    save(directory)
    (directory / "items.json").write_text(json.dumps({"item_ids": ["a", "b"]}))
    rewrite_manifest(directory)
    with pytest.raises(ArtifactError, match=f"expected {SHOP.n_items} item ids, found 2"):
        load_version(directory)


def test_versions_are_never_overwritten_and_failed_saves_leave_nothing(tmp_path):
    directory = tmp_path / "v"
    save(directory)
    with pytest.raises(ArtifactError, match="not empty"):
        save(directory)
    with pytest.raises(ValueError):
        save(tmp_path / "bad", metrics={"model": {"ndcg@10": float("nan")}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v"]
    empty = tmp_path / "empty"
    empty.mkdir()
    save(empty)  # an empty directory made by the caller is fine
    assert (empty / MANIFEST).exists()


def test_text_embeddings_must_be_the_ones_the_model_holds(tmp_path):
    with pytest.raises(ValueError, match="differ from the ones the model was trained with"):
        save(tmp_path / "v", text_embeddings=SHOP.texts[::-1].copy())
