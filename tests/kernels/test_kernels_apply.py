"""kernels.apply (the training side's torch rule) against slicing oracles and painted masks, on the CPU and, where
there is one, a CUDA device; kernels.areas (the host's exact lam) against painted masks; the two agree."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import oracles as ref
from conftest import torch_devices
from helpers import random_boxes
from kernels import apply, areas, boxes as mix


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# ------------------------------------------------------------------------------------ erase / paste
@pytest.mark.parametrize("device", torch_devices())
def test_erase_matches_the_slicing_oracle(rng, device):
    x = rng.standard_normal((5, 3, 17, 23)).astype(np.float32)
    b = random_boxes(rng, 5, 4, 17, 23)
    xt = torch.from_numpy(x).to(device)
    mask = apply.box_mask(torch.from_numpy(b).to(device), 17, 23)
    np.testing.assert_array_equal(mask.cpu().numpy(), ref.union_mask(b, 17, 23))
    np.testing.assert_array_equal(apply.occlude(xt, mask, fill=0.0).cpu().numpy(), ref.erase_nchw(x, b, 0.0))
    fill = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    np.testing.assert_array_equal(apply.occlude(xt, mask, fill=fill.tolist()).cpu().numpy(), ref.erase_nchw(x, b, fill))
    np.testing.assert_array_equal(xt.cpu().numpy(), x)  # input untouched
    half = apply.occlude(xt.half(), mask, fill=fill.tolist())
    assert half.dtype == torch.float16
    np.testing.assert_array_equal(half.float().cpu().numpy(),
                                  ref.erase_nchw(x.astype(np.float16), b, fill.astype(np.float16)))


@pytest.mark.parametrize("device", torch_devices())
def test_paste_from_partner_and_source_match_the_oracle(rng, device):
    x = rng.standard_normal((6, 3, 15, 12)).astype(np.float32)
    b = random_boxes(rng, 6, 2, 15, 12)
    partner = np.array([3, 0, -1, 5, 1, 2])
    xt = torch.from_numpy(x).to(device)
    mask = apply.box_mask(torch.from_numpy(b).to(device), 15, 12)
    out = apply.occlude(xt, mask, partner=torch.from_numpy(partner).to(device)).cpu().numpy()
    np.testing.assert_array_equal(out, ref.paste_nchw(x, partner, b))
    source = rng.standard_normal(x.shape).astype(np.float32)
    out = apply.occlude(xt, mask, source=torch.from_numpy(source).to(device)).cpu().numpy()
    inside = ref.union_mask(b, 15, 12)[:, None]
    np.testing.assert_array_equal(out, np.where(inside, source, x))


# ------------------------------------------------------------------------------------ CutMix lam
def test_cutmix_paste_lam_is_exact_kept_share(rng):
    """CutMix end to end: the share of a row's own pixels equals the sampler's lambda, lam_from_boxes (host)
    and lam_from_mask (the training side's count of the pasted mask)."""
    n, H, W = 16, 32, 24
    x = torch.arange(n, dtype=torch.float32)[:, None, None, None].expand(n, 3, H, W).contiguous()
    boxes, lam = mix.cutmix_box(rng, H, W, alpha=1.0, n=n)
    partner = torch.from_numpy((np.arange(n) + 1) % n)
    mask = apply.box_mask(torch.from_numpy(boxes[:, None]), H, W)
    out = apply.occlude(x, mask, partner=partner)
    own_share = (out[:, 0] == torch.arange(n)[:, None, None]).double().mean(dim=(1, 2)).numpy()
    np.testing.assert_allclose(own_share, lam, rtol=0, atol=1e-12)
    np.testing.assert_allclose(areas.lam_from_boxes(boxes, H, W, partner.numpy()), lam, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(apply.lam_from_mask(mask).numpy(), areas.lam_from_boxes(boxes, H, W))


def test_lam_from_mask_equals_lam_from_boxes_bit_for_bit(rng):
    """The training side's lam and the host's are one rule: equal float64 values on the same boxes."""
    for H, W, k in [(17, 23, 1), (40, 31, 12), (224, 224, 3)]:
        b = random_boxes(rng, 30, k, H, W)
        np.testing.assert_array_equal(apply.lam_from_mask(apply.box_mask(torch.from_numpy(b), H, W)).numpy(),
                                      areas.lam_from_boxes(b, H, W))


# ----------------------------------------------------------------------------------- grid cells
@pytest.mark.parametrize("H,W,G", [(28, 28, 7), (23, 30, 7), (9, 11, (4, 3))])
def test_cell_mask_is_the_upsampled_grid(rng, H, W, G):
    gh, gw = (G, G) if isinstance(G, int) else G
    n = 5
    x = rng.standard_normal((n, 2, H, W)).astype(np.float32)
    cells = rng.random((n, gh, gw)) < 0.4
    partner = np.array([4, 0, -1, 2, 1])
    pix = apply.cell_mask(torch.from_numpy(cells), H, W)
    np.testing.assert_array_equal(pix.numpy(), ref.upsample_cells(cells, H, W))
    out = apply.occlude(torch.from_numpy(x), pix, partner=torch.from_numpy(partner)).numpy()
    for r in range(n):
        inside = pix[r].numpy() & (partner[r] >= 0)
        np.testing.assert_array_equal(out[r][:, inside], x[partner[r]][:, inside])
        np.testing.assert_array_equal(out[r][:, ~inside], x[r][:, ~inside])
    expect = np.where(partner >= 0, 1 - pix.numpy().mean(axis=(1, 2)), 1.0)
    np.testing.assert_allclose(areas.lam_from_cells(cells, H, W, partner), expect, rtol=0, atol=1e-12)
    taken = pix & torch.from_numpy(partner >= 0)[:, None, None]
    np.testing.assert_allclose(apply.lam_from_mask(taken).numpy(), expect, rtol=0, atol=1e-12)


def test_cell_edges_divisible_is_nearest_upsampling():
    np.testing.assert_array_equal(areas.cell_edges(7, 224), np.arange(8) * 32)
    np.testing.assert_array_equal(areas.cell_edges(7, 30), [0, 4, 8, 12, 16, 20, 24, 30])
    m = np.zeros((1, 7, 7), bool)
    m[0, :2, :3] = True  # 6 cells
    assert areas.lam_from_cells(m, 224, 224)[0] == pytest.approx(1 - 6 / 49, abs=1e-15)


# ------------------------------------------------------------------------------------ lam_from_boxes
def test_lam_from_boxes_is_union_area(rng):
    for H, W, k in [(17, 23, 1), (17, 23, 5), (40, 31, 12), (8, 8, 30)]:
        b = random_boxes(rng, 20, k, H, W)
        expect = 1 - ref.union_mask(b, H, W).mean(axis=(1, 2))
        np.testing.assert_allclose(areas.lam_from_boxes(b, H, W), expect, rtol=0, atol=1e-12)
        # both exact methods, whichever the size heuristic picks
        c = np.stack([np.clip(b[..., 0], 0, H), np.clip(b[..., 1], 0, W),
                      np.clip(b[..., 2], 0, H), np.clip(b[..., 3], 0, W)], -1).astype(np.int64)
        empty = (c[..., 2] <= c[..., 0]) | (c[..., 3] <= c[..., 1])
        c[empty] = 0
        area = 1 - expect
        for fn in (areas._union_area_compressed, areas._union_area_painted):
            kw = (H, W, np) if fn is areas._union_area_painted else (np,)
            np.testing.assert_allclose(fn(c[..., 0], c[..., 1], c[..., 2], c[..., 3], *kw) / (H * W), area,
                                       rtol=0, atol=1e-12)


def test_lam_from_boxes_hide_and_seek_grid(rng):
    """Many boxes (a 16-px grid at 224, about half the cells hidden): painted path, exact."""
    H = W = 224
    g = np.arange(0, 224, 16)
    cells = np.array([(y, x, y + 16, x + 16) for y in g for x in g], np.int32)
    hide = rng.random((8, len(cells))) < 0.5
    b = np.where(hide[..., None], cells[None], -1).astype(np.int32)
    np.testing.assert_allclose(areas.lam_from_boxes(b, H, W), 1 - hide.mean(axis=1), rtol=0, atol=1e-12)


def test_lam_from_boxes_overlap_counted_once_and_padding():
    b = np.array([[[0, 0, 10, 10], [5, 5, 15, 15], [-1, -1, -1, -1]],
                  [[-1, -1, -1, -1], [-1, -1, -1, -1], [-1, -1, -1, -1]],
                  [[0, 0, 10, 10], [0, 0, 10, 10], [2, 2, 2, 9]]], dtype=np.int32)
    lam = areas.lam_from_boxes(b, 20, 20)
    np.testing.assert_allclose(lam, [1 - 175 / 400, 1.0, 1 - 100 / 400])
    np.testing.assert_allclose(areas.lam_from_boxes(b, 20, 20, np.array([1, 0, -1])), [1 - 175 / 400, 1.0, 1.0])
    assert areas.lam_from_boxes(np.zeros((3, 0, 4), np.int32), 5, 5).tolist() == [1.0, 1.0, 1.0]
    assert areas.lam_from_boxes(np.array([0, 0, 2, 5]), 4, 5).tolist() == [0.5]


# ------------------------------------------------------------------------------------ invalid args
@pytest.mark.parametrize("call, words", [
    (lambda: areas.lam_from_boxes(np.zeros((2, 1, 4), np.float32), 5, 5), "boxes"),
    (lambda: areas.lam_from_boxes(np.zeros((3, 1, 4), np.int32), 5, 5, np.array([0, 1])), "partner_index"),
    (lambda: areas.lam_from_boxes(np.zeros((2, 1, 4), np.int32), 0, 5), "H"),
    (lambda: areas.lam_from_cells(np.zeros((2, 3, 3), np.int32), 8, 8), "cell"),
    (lambda: areas.lam_from_cells(np.zeros((2, 3, 3), bool), 8, 2), "grid size"),
])
def test_invalid_arguments_raise_value_error(call, words):
    with pytest.raises(ValueError, match=words):
        call()
