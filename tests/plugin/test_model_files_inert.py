"""Model files are data, never code: a crafted file in the artifact folder is refused (with a log
line naming the version and what is wrong), nothing in it ever runs, and every web process goes on
serving the version it had.

The attacker here can write to the artifact folder, and in the worst cases also registers the
crafted folder the way a training run does (so the registry's manifest checksum matches it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from rest_framework.test import APIClient

from recsys_core.artifacts import MANIFEST, WEIGHTS
from shop_recs.models import ModelVersion
from shop_recs.registry import GateDecision, store_version
from shop_recs.serving import model_holder


class WritesMarker:
    """Unpickling this creates the marker file: proof that a loader ran the file's code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def malicious_pickle(marker: Path) -> bytes:
    return pickle.dumps({"state_dict": WritesMarker(marker)})


def rewrite_manifest(folder: Path) -> None:
    """Make the manifest vouch for the files as they are now (an attacker who knows the format)."""
    manifest = json.loads((folder / MANIFEST).read_bytes())
    for name, entry in manifest["files"].items():
        data = (folder / name).read_bytes()
        entry.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (folder / MANIFEST).write_text(json.dumps(manifest))


def pickle_as_weights(folder: Path, marker: Path) -> None:
    (folder / WEIGHTS).write_bytes(malicious_pickle(marker))
    rewrite_manifest(folder)


def truncated_weights(folder: Path, marker: Path) -> None:
    data = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(data[: len(data) // 2])
    rewrite_manifest(folder)


def safetensors_header_pointing_past_the_end(folder: Path, marker: Path) -> None:
    data = bytearray((folder / WEIGHTS).read_bytes())
    data[:8] = (len(data) * 4).to_bytes(8, "little")  # header length beyond the file
    (folder / WEIGHTS).write_bytes(bytes(data))
    rewrite_manifest(folder)


# name -> (how the folder is crafted before it is registered, what the log says)
REGISTERED_CRAFTED = {
    "pickle instead of safetensors": (pickle_as_weights, "unreadable safetensors"),
    "truncated safetensors": (truncated_weights, "unreadable safetensors"),
    "safetensors header past the end": (safetensors_header_pointing_past_the_end,
                                        "unreadable safetensors"),
}


def copy_of(artifact: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "crafted"
    shutil.copytree(artifact, folder)
    return folder


def register(folder: Path) -> ModelVersion:
    return store_version(None, folder, {}, {}, GateDecision(True, "crafted"))


def storage_folder(version: ModelVersion) -> Path:
    return Path(default_storage.path(version.artifact_path))


@pytest.fixture
def serving_v1(recs_shop, trained_artifact) -> ModelVersion:
    """A good version, active and loaded by this process."""
    v1 = register(trained_artifact[0])
    v1.activate()
    model_holder.reset()
    assert model_holder.get().version_id == v1.pk
    return v1


def switch_to(version: ModelVersion) -> None:
    """Activate a version and let this process notice (as it does every MODEL_RELOAD_INTERVAL)."""
    version.activate()
    model_holder.refresh()


def assert_still_serving(v1: ModelVersion, recs_shop) -> None:
    assert model_holder.get().version_id == v1.pk
    recs_shop.view(11, 12, user=recs_shop.alice)
    api = APIClient()
    api.force_login(recs_shop.alice)
    body = api.get("/recs/api/for-you/", {"limit": 3}).json()
    assert body["model_version"] == v1.label and body["source"] == "model"


@pytest.mark.parametrize("case", list(REGISTERED_CRAFTED))
def test_a_crafted_version_is_refused_and_the_previous_one_serves(
    case: str, serving_v1, recs_shop, trained_artifact, tmp_path, caplog
) -> None:
    craft, reason = REGISTERED_CRAFTED[case]
    marker = tmp_path / "marker"
    folder = copy_of(trained_artifact[0], tmp_path)
    craft(folder, marker)
    crafted = register(folder)
    with caplog.at_level(logging.ERROR, logger="shop_recs"):
        switch_to(crafted)
    assert f"Model {crafted.label} could not be loaded" in caplog.text
    assert reason in caplog.text and f"still serving {serving_v1.label}" in caplog.text
    assert not marker.exists()
    assert_still_serving(serving_v1, recs_shop)


TAMPERED_AFTER_REGISTRATION: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "weights with one byte changed": (
        lambda folder, marker: _flip_last_byte(folder / WEIGHTS),
        "sha256 does not match the manifest",
    ),
    "pickle instead of safetensors, manifest rewritten": (
        pickle_as_weights, "manifest checksum differs from the registry's",
    ),
    "manifest deleted": (
        lambda folder, marker: (folder / MANIFEST).unlink(), "no manifest",
    ),
}


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("case", list(TAMPERED_AFTER_REGISTRATION))
def test_a_version_tampered_with_in_storage_is_refused(
    case: str, serving_v1, recs_shop, trained_artifact, tmp_path, caplog
) -> None:
    tamper, reason = TAMPERED_AFTER_REGISTRATION[case]
    marker = tmp_path / "marker"
    v2 = register(trained_artifact[0])
    tamper(storage_folder(v2), marker)
    with caplog.at_level(logging.ERROR, logger="shop_recs"):
        switch_to(v2)
    assert f"Model {v2.label} could not be loaded" in caplog.text and reason in caplog.text
    assert not marker.exists()
    assert_still_serving(serving_v1, recs_shop)


def test_pickles_beside_a_good_version_are_never_opened(
    serving_v1, recs_shop, trained_artifact, tmp_path
) -> None:
    """Files the manifest does not list (model.pt, weights.pkl) are not read at all."""
    marker = tmp_path / "marker"
    v2 = register(trained_artifact[0])
    for name in ("model.pt", "weights.pkl", "pytorch_model.bin"):
        (storage_folder(v2) / name).write_bytes(malicious_pickle(marker))
    switch_to(v2)
    assert model_holder.get().version_id == v2.pk
    assert not marker.exists()


def test_a_refused_version_is_not_retried_on_every_request(
    serving_v1, recs_shop, trained_artifact, tmp_path, caplog
) -> None:
    """One log line per bad version and process, not one per request."""
    folder = copy_of(trained_artifact[0], tmp_path)
    truncated_weights(folder, tmp_path / "marker")
    crafted = register(folder)
    with caplog.at_level(logging.ERROR, logger="shop_recs"):
        switch_to(crafted)
        for _ in range(3):
            model_holder.refresh()
    assert caplog.text.count(f"Model {crafted.label} could not be loaded") == 1


def test_the_crafted_pickle_really_runs_code_when_unpickled(tmp_path) -> None:
    """So that 'the marker never appears' above means something."""
    marker = tmp_path / "marker"
    pickle.loads(malicious_pickle(marker))  # noqa: S301 - the point of the test
    assert marker.exists()
