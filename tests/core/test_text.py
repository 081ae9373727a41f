"""Text encoder: pinned default model, pooling that ignores padding, the disk cache."""

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from recsys_core import text
from recsys_core.text import TextEncoder, TextModelError, default_model_path

TEXTS = ["red lipstick", "a much longer product title about a cordless power drill", "", "jeans"]


def make_tiny_model(folder, seed):
    """A 2-layer BERT with the default model's tokenizer: fast enough for every test."""
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64)
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(default_model_path()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="module")
def minilm():
    return TextEncoder()


def test_default_model_weights_are_pinned(monkeypatch):
    assert default_model_path()
    monkeypatch.setattr(text, "DEFAULT_WEIGHTS_SHA256", "0" * 64)
    with pytest.raises(TextModelError, match="sha256"):
        TextEncoder()


def test_default_encoder_puts_related_products_closer(minilm):
    vectors = minilm.encode(["matte red lipstick", "red lip colour", "cordless power drill"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    assert minilm.model_id.startswith("sentence-transformers/all-MiniLM-L6-v2@")


def test_batched_encoding_equals_one_text_at_a_time(tiny_model):
    batched = TextEncoder(tiny_model, batch_size=3).encode(TEXTS)
    single = TextEncoder(tiny_model, batch_size=1)
    for position, one_text in enumerate(TEXTS):
        np.testing.assert_allclose(batched[position], single.encode([one_text])[0], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def _threads_while_embedding(encoder, texts, monkeypatch) -> tuple[list[int], np.ndarray]:
    """Encode `texts` in a process set to one torch thread (a web process): the threads each
    embedding call ran on, and the vectors; the process's setting must be back afterwards."""
    threads = []
    real_embed = encoder._embed
    monkeypatch.setattr(encoder, "_embed", lambda texts, report=None: (
        threads.append(torch.get_num_threads()) or real_embed(texts, report)))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        vectors = encoder.encode(texts)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)
    return threads, vectors


def test_a_catalogue_is_embedded_on_every_core_and_the_setting_is_restored(
    tiny_model, monkeypatch
):
    """A web process serves on one torch thread; embedding products must not change that."""
    import os

    encoder = TextEncoder(tiny_model, batch_size=2)  # two batches of new texts: catalogue work
    threads, _ = _threads_while_embedding(encoder, TEXTS, monkeypatch)
    assert threads == [len(os.sched_getaffinity(0))]


def test_fewer_texts_than_a_batch_embed_on_the_processs_own_threads(tiny_model, monkeypatch):
    """A new product's text, embedded in a web request, must not take every core: the other
    requests of a busy machine need them (SERVING_THREADS)."""
    encoder = TextEncoder(tiny_model, batch_size=64)
    threads, vectors = _threads_while_embedding(encoder, ["a new green tea"], monkeypatch)
    assert threads == [1] and vectors.shape == (1, encoder.dim)


def test_cached_texts_are_not_embedded_again(tiny_model, tmp_path, monkeypatch):
    first = TextEncoder(tiny_model, cache_dir=tmp_path).encode(TEXTS)
    second = TextEncoder(tiny_model, cache_dir=tmp_path)
    embedded = []
    real_embed = second._embed
    monkeypatch.setattr(second, "_embed",
                        lambda texts, report=None: embedded.extend(texts) or real_embed(texts))
    again = second.encode([*TEXTS, "a new product"])
    assert embedded == ["a new product"]
    np.testing.assert_array_equal(again[:len(TEXTS)], first)


def test_texts_another_process_embedded_since_are_read_not_embedded_again(
    tiny_model, tmp_path, monkeypatch
):
    """A web process started before the catalogue job embedded a new product finds its vector
    in the shared cache folder instead of running the model in the request."""
    web = TextEncoder(tiny_model, cache_dir=tmp_path)  # started with an empty cache
    worker = TextEncoder(tiny_model, cache_dir=tmp_path)
    expected = worker.encode(TEXTS)
    (worker._store.folder / "broken.safetensors").write_bytes(b"not a safetensors file")
    embedded = []
    real_embed = web._embed
    monkeypatch.setattr(web, "_embed",
                        lambda texts, report=None: embedded.extend(texts) or real_embed(texts))
    np.testing.assert_array_equal(web.encode(TEXTS), expected)
    assert embedded == []
    web.encode(["a product nobody embedded"])  # looks again, finds nothing new, embeds it
    assert embedded == ["a product nobody embedded"]
    assert web._store.load_new_shards() == 0  # the damaged shard is not read again


def test_another_model_does_not_reuse_the_cache(tiny_model, tmp_path_factory, tmp_path):
    other = make_tiny_model(tmp_path_factory.mktemp("other"), seed=1)
    one = TextEncoder(tiny_model, cache_dir=tmp_path)
    two = TextEncoder(other, cache_dir=tmp_path)
    assert one.model_id != two.model_id
    assert not np.allclose(one.encode(TEXTS[:1]), two.encode(TEXTS[:1]))
    assert TextEncoder(tiny_model, cache_dir=tmp_path, max_length=4)._store.folder != \
        one._store.folder  # truncation changes the vectors, so it is part of the key


def test_a_damaged_cache_shard_is_skipped(tiny_model, tmp_path):
    encoder = TextEncoder(tiny_model, cache_dir=tmp_path)
    expected = encoder.encode(TEXTS)
    (encoder._store.folder / "broken.safetensors").write_bytes(b"not a safetensors file")
    np.testing.assert_allclose(TextEncoder(tiny_model, cache_dir=tmp_path).encode(TEXTS),
                               expected, atol=1e-6)


def test_many_small_runs_are_compacted_into_few_shards(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(text, "_SHARDS_BEFORE_COMPACTION", 3)
    encoder = TextEncoder(tiny_model, cache_dir=tmp_path)
    for number in range(6):
        encoder.encode([f"product {number}"])
    assert len(list(encoder._store.folder.glob("*.safetensors"))) < 3
    fresh = TextEncoder(tiny_model, cache_dir=tmp_path)
    assert all(fresh._store.get(text._text_key(f"product {n}")) is not None for n in range(6))


def test_progress_counts_up_to_every_text(tiny_model):
    calls = []
    TextEncoder(tiny_model, batch_size=2).encode([*TEXTS, TEXTS[0]],
                                                 progress=lambda d, t: calls.append((d, t)))
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1] == (5, 5) and len(calls) > 2


def test_query_encoding_matches_product_encoding(tiny_model):
    encoder = TextEncoder(tiny_model)
    query = encoder.encode_query("blue jeans")
    np.testing.assert_allclose(query, TextEncoder(tiny_model).encode(["blue jeans"])[0], atol=1e-6)
    query[:] = 0  # the caller's copy; the remembered vector is unchanged
    assert np.linalg.norm(encoder.encode_query("blue jeans")) == pytest.approx(1.0, abs=1e-5)


def test_bad_input_is_refused(tiny_model, tmp_path):
    encoder = TextEncoder(tiny_model)
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        encoder.encode(["fine", 3])
    with pytest.raises(TextModelError, match="not a directory"):
        TextEncoder(tmp_path / "missing")
    with pytest.raises(TextModelError, match="no weights file"):
        TextEncoder(tmp_path)
