"""kernels.search.topk_cells (Attentive CutMix) against the brute-force oracle of tests/oracles.py."""
from __future__ import annotations

import numpy as np
import pytest

import oracles as ref
from kernels import search


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


# ------------------------------------------------------------------------------ Attentive CutMix
def test_topk_cells_are_the_k_largest(rng):
    att = rng.random((10, 7, 7))
    for k in [0, 1, 6, 48, 49]:
        mask, lam = search.topk_cells(att, k)
        assert mask.dtype == bool and mask.shape == (10, 7, 7)
        np.testing.assert_array_equal(mask, ref.topk_cells(att, k))
        assert lam == k / 49
        if 0 < k < 49:
            lo = np.where(mask, att, np.inf).min(axis=(1, 2))
            hi = np.where(~mask, att, -np.inf).max(axis=(1, 2))
            assert np.all(lo > hi)


def test_topk_cells_ties_lower_index_first():
    att = np.zeros((2, 4, 3))
    att[0] = 1.0  # all tied: the first k in row-major order
    att[1, 2, 1] = att[1, 0, 2] = att[1, 3, 0] = 5.0
    mask, _ = search.topk_cells(att, 2)
    np.testing.assert_array_equal(np.flatnonzero(mask[0]), [0, 1])
    np.testing.assert_array_equal(np.flatnonzero(mask[1]), [2, 7])
    np.testing.assert_array_equal(mask, ref.topk_cells(att, 2))


@pytest.mark.parametrize("call, words", [
    (lambda a: search.topk_cells(a[0], 2), "attention"),
    (lambda a: search.topk_cells(a, 16 * 16 + 1), "k must be"),
    (lambda a: search.topk_cells(np.full_like(a, np.nan), 2), "NaN"),
])
def test_invalid_arguments_raise_value_error(call, words):
    a = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    with pytest.raises(ValueError, match=words):
        call(a)
