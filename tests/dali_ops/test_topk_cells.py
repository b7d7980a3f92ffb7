"""box_search's ``topk_cells`` (Attentive CutMix's cells, Walawalkar et al. 2020, arXiv 2003.13048) on the CPU
operator against tests/oracles.py's restatement (cell means summed pixel by pixel, a Python sort), its GPU
kernel run on the host (tests/cuda_emulation) against the CPU operator, and its argument checks."""
from __future__ import annotations

import numpy as np
import pytest

import oracles as ref
from conftest import requires_gpu
from helpers import emulated_box_search, search_both


def _maps(rng):
    """Maps of the grid's own size, larger and odd ones, few levels (ties), a NaN block and a constant map."""
    shapes = [(7, 7), (7, 7), (64, 64), (17, 23), (9, 30), (7, 8), (50, 50), (13, 13)]
    sal = [rng.random(s).astype(np.float32) for s in shapes]
    sal[1] = (np.floor(sal[1] * 3) / 3).astype(np.float32)
    sal[4][:, :5] = np.nan
    sal[7][:] = 0.25
    return sal


@pytest.mark.parametrize("grid, top_k, image_size", [(7, 6, 0), (7, 6, 224), (7, 0, 64), (7, 49, 0), (5, 3, 64),
                                                     (1, 0, 0)])
def test_cpu_operator_equals_the_restated_rule(grid, top_k, image_size):
    rng = np.random.default_rng(grid * 100 + top_k)
    sal = _maps(rng)
    n = len(sal)
    index = [np.int32(i) for i in rng.permutation(n)]
    index[2] = np.int32(-1)
    kw = dict(method="topk_cells", grid=grid, top_k=top_k, image_size=image_size)
    out = search_both(sal, [np.zeros(2, np.int32)] * n, index, kw, devices=("cpu",))["cpu"]
    assert out.shape == (n, grid * grid - top_k, 4)
    for r in range(n):
        if index[r] < 0:
            assert np.all(out[r] == -1)
            continue
        want = ref.topk_cell_boxes(sal[index[r]], grid, top_k, image_size)
        np.testing.assert_array_equal(out[r], want, err_msg=f"row {r}")


def test_the_kept_cells_are_the_top_k_of_a_grid_sized_map():
    """A 7 x 7 map is its own grid: the kept cells are its 6 largest values (openmixup's topk on the 7 x 7
    channel mean), and the boxes tile the rest of a 224 px image in 32 px cells."""
    rng = np.random.default_rng(1)
    att = rng.random((3, 7, 7)).astype(np.float32)
    out = search_both(list(att), [np.zeros(2, np.int32)] * 3, None,
                      dict(method="topk_cells", grid=7, top_k=6, image_size=224), devices=("cpu",))["cpu"]
    for r in range(3):
        painted = np.zeros((224, 224), bool)
        for y0, x0, y1, x1 in out[r]:
            assert (y1 - y0, x1 - x0) == (32, 32)
            painted[y0:y1, x0:x1] = True
        keep = ref.upsample_cells(ref.topk_cells(att[r:r + 1], 6), 224, 224)[0]
        np.testing.assert_array_equal(painted, ~keep)


@pytest.mark.parametrize("grid, top_k, image_size", [(7, 6, 0), (7, 0, 224), (5, 25, 64), (3, 4, 0)])
def test_emulated_gpu_kernel_equals_the_cpu_operator(box_search_emu, grid, top_k, image_size):
    rng = np.random.default_rng(grid + top_k)
    sal = _maps(rng)
    n = len(sal)
    index = [int(v) for v in rng.integers(-1, n, n)]
    kw = dict(method="topk_cells", grid=grid, top_k=top_k, image_size=image_size)
    draws = [np.zeros(2, np.int32)] * n
    cpu = search_both(sal, draws, list(np.array(index, np.int32)), kw, devices=("cpu",))["cpu"]
    np.testing.assert_array_equal(emulated_box_search(box_search_emu, sal, draws, index, kw), cpu)


@requires_gpu
def test_gpu_operator_equals_the_cpu_operator():
    sal = _maps(np.random.default_rng(5))
    n = len(sal)
    for kw in (dict(method="topk_cells", grid=7, top_k=6), dict(method="topk_cells", grid=7, top_k=3, image_size=224)):
        outs = search_both(sal, [np.zeros(2, np.int32)] * n, list(np.arange(n, dtype=np.int32)), kw)
        np.testing.assert_array_equal(outs["gpu"], outs["cpu"], err_msg=str(kw))


@pytest.mark.parametrize("kw, shape, match", [
    (dict(grid=0), (7, 7), "`grid` must be >= 1"),
    (dict(grid=7, top_k=50), (7, 7), r"`top_k` must lie in \[0, grid \* grid\]"),
    (dict(grid=7, top_k=6, image_size=5), (7, 7), "`image_size` must be 0"),
    (dict(grid=7, top_k=6), (6, 9), "at least grid x grid"),
])
def test_bad_arguments_are_named(kw, shape, match):
    with pytest.raises(RuntimeError, match=match):
        search_both([np.ones(shape, np.float32)], [np.zeros(2, np.int32)], None, dict(method="topk_cells", **kw),
                    devices=("cpu",))


def test_the_python_wrapper_checks_its_arguments():
    from dali_ops import mixing

    with pytest.raises(ValueError, match="top_k"):
        mixing.topk_cells(None, grid=3, top_k=10)
    with pytest.raises(ValueError, match="grid"):
        mixing.topk_cells(None, grid=0)
