"""HashedTokenEncoder: exact tokens as stateless multi-hot side vectors."""

import numpy as np

from recsys_core.tokens import HashedTokenEncoder


def test_texts_sharing_tokens_share_buckets_across_instances():
    first = HashedTokenEncoder(dim=4096).encode(["Attribute 12, attribute 8", "attribute 12"])
    again = HashedTokenEncoder(dim=4096).encode(["attribute 12"])
    np.testing.assert_array_equal(first[1], again[0])
    assert np.count_nonzero(first[0]) == 3  # "attribute", "12", "8"; case and commas ignored
    assert float(first[0] @ first[1]) > 0.5


def test_rows_are_unit_length_and_empty_texts_are_zero():
    vectors = HashedTokenEncoder(dim=512).encode(["brand 7 category 3", "", "..."])
    assert np.isclose(np.linalg.norm(vectors[0]), 1.0)
    assert not vectors[1].any() and not vectors[2].any()


def test_different_identifiers_get_different_buckets():
    encoder = HashedTokenEncoder(dim=2048)
    vectors = encoder.encode([f"brand {i}" for i in range(100)])
    brand_only = vectors - vectors.min(axis=0)  # remove the shared "brand" bucket
    distinct = {tuple(np.flatnonzero(row)) for row in brand_only}
    assert len(distinct) >= 95  # a few hash collisions at most
    assert encoder.model_id == "hashed-tokens-2048"


def test_progress_is_reported_once_at_the_end():
    calls = []
    HashedTokenEncoder(dim=64).encode(["a", "b"], progress=lambda done, total: calls.append(
        (done, total)))
    assert calls == [(2, 2)]
