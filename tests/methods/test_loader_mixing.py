"""Mixing and saliency-guided loader methods against independent oracles: the plain loader's pixels (same
seed -> same crops and flips), painted box masks, exact box areas, OpenCV contrib's fine-grained saliency
of the row's uint8 image, brute-force window sums, and the papers' box rules restated here."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import oracles as ref
from helpers import MEAN, SIZE, STD, box_mask, epoch, make, opencv_saliency

S2 = SIZE * SIZE


def half_size(lo, hi, peak, size):
    """Half side h with (lo, hi) == (clip(peak - h, 0, size), clip(peak + h, 0, size)); None if impossible."""
    cands = set()
    if lo > 0:
        cands.add(peak - lo)
    if hi < size:
        cands.add(hi - peak)
    if not cands:
        return "any" if lo == 0 and hi == size else None
    if len(cands) > 1:
        return None
    h = cands.pop()
    return h if (max(peak - h, 0), min(peak + h, size)) == (lo, hi) else None


def check_mixed_rows(plain, mixed, num_classes=3):
    """Pixels inside the row's boxes are its partner's (plain) pixels, outside its own; lam and targets exact."""
    for r in range(mixed.images.shape[0]):
        p = int(mixed.meta["partner"][r])
        boxes = mixed.meta["boxes"][r].numpy()
        mask = box_mask(boxes)
        out = mixed.images[r].numpy()
        if p < 0:
            assert not mask.any() and float(mixed.meta["lam"][r]) == 1.0
            np.testing.assert_array_equal(out, plain.images[r].numpy())
            continue
        assert int(mixed.meta["copy"][p]) == int(mixed.meta["copy"][r])  # partner from the same copy
        np.testing.assert_array_equal(out[:, mask], plain.images[p].numpy()[:, mask])
        np.testing.assert_array_equal(out[:, ~mask], plain.images[r].numpy()[:, ~mask])
        lam = 1.0 - mask.sum() / S2
        assert float(mixed.meta["lam"][r]) == pytest.approx(lam, abs=1e-6)
        expect = np.zeros(num_classes)
        expect[int(mixed.labels[r])] += lam
        expect[int(mixed.labels[p])] += 1 - lam
        np.testing.assert_allclose(mixed.targets[r].numpy(), expect, atol=1e-6)


@pytest.mark.parametrize("kw", [dict(copies=2), dict(mode="batch", copies=2, copy_mode="batch_aug")])
def test_cutmix_pastes_partner_box_with_exact_lam(structured_root, kw):
    plain = epoch(make(structured_root, batch=6, seed=4, **{k: v for k, v in kw.items() if k != "mode"}), 2)
    mixed = epoch(make(structured_root, batch=6, seed=4, method="cutmix", **kw), 2)
    m = kw.get("copies", 1)
    for a, b in zip(plain, mixed):
        assert torch.equal(a.meta["crop"], b.meta["crop"]) and torch.equal(a.meta["flip"], b.meta["flip"])
        check_mixed_rows(a, b)
        n = b.images.shape[0] // m
        for c in range(m):
            rows = slice(c * n, (c + 1) * n)
            # partner = a permutation of the copy's rows (p = 1: every row mixed)
            assert sorted(b.meta["partner"][rows].tolist()) == list(range(c * n, (c + 1) * n))
            for y0, x0, y1, x1 in b.meta["boxes"][rows, 0].tolist():
                # CutMix Algorithm A1: the box is clip(centre -+ cut // 2) with one cut for both sides (square):
                # an unclipped side spans 2 * (cut // 2), a clipped one no more
                halves = {(hi - lo) // 2 for lo, hi in ((y0, y1), (x0, x1)) if 0 < lo and hi < SIZE}
                for lo, hi in ((y0, y1), (x0, x1)):
                    assert 0 <= lo <= hi <= SIZE
                    if 0 < lo and hi < SIZE:
                        assert (hi - lo) % 2 == 0
                assert len(halves) <= 1
                if halves:
                    assert max(y1 - y0, x1 - x0) <= 2 * halves.pop()
            if kw.get("mode") == "batch":  # clovaai: one box and lambda per batch (and copy)
                assert torch.all(b.meta["boxes"][rows] == b.meta["boxes"][c * n])
                assert torch.all(b.meta["lam"][rows] == b.meta["lam"][c * n])


def test_cutmix_p_keep_image_and_float16(structured_root):
    (b,) = epoch(make(structured_root, batch=6, seed=2, method="cutmix", copies=2, p_keep_image=1.0), 1)
    assert torch.all(b.meta["partner"] == -1) and torch.all(b.meta["lam"] == 1) and torch.all(b.meta["boxes"] == -1)
    (h,) = epoch(make(structured_root, batch=6, seed=2, method="cutmix", dtype="float16"), 1)
    (f,) = epoch(make(structured_root, batch=6, seed=2, method="cutmix"), 1)
    assert h.images.dtype == torch.float16
    np.testing.assert_array_equal(h.images.numpy(), f.images.numpy().astype(np.float16))


@pytest.mark.parametrize("mode", ["elem", "batch"])
def test_saliencymix_box_on_the_source_peak(structured_root, mode):
    copies = dict(copies=2, copy_mode="batch_aug") if mode == "elem" else {}
    plain = epoch(make(structured_root, batch=6, seed=8, **copies), 1)
    mixed = epoch(make(structured_root, batch=6, seed=8, method="saliencymix", mode=mode,
                       p_keep_image=0.3 if mode == "elem" else 0.0, **copies), 1)
    for a, b in zip(plain, mixed):
        check_mixed_rows(a, b)  # rows kept by p_keep_image: unchanged, partner -1, lam 1
        partner = b.meta["partner"].numpy()
        if mode == "elem":
            assert 0 < (partner < 0).sum() < len(partner)
        for r in range(b.images.shape[0]):
            if partner[r] < 0:
                continue
            # official code: the saliency of the source image (batch mode: of the first permuted image)
            src = partner[r] if mode == "elem" else partner[0]
            sal = opencv_saliency(a.images[src])
            q = (sal * 255).astype(np.uint8)
            py, px = np.unravel_index(np.argmax(q), q.shape)
            y0, x0, y1, x1 = b.meta["boxes"][r, 0].tolist()
            assert y0 <= py < y1 and x0 <= px < x1  # the box holds the source's saliency peak
            hy, hx = half_size(y0, y1, py, SIZE), half_size(x0, x1, px, SIZE)
            assert hy is not None and hx is not None, (r, (y0, x0, y1, x1), (py, px))
            if hy != "any" and hx != "any":
                assert hy == hx  # one cut for both sides of a square image
        if mode == "batch":
            assert torch.all(b.meta["boxes"] == b.meta["boxes"][0])


@pytest.mark.parametrize("mode", ["elem", "batch"])
def test_saliencymix_official_box_on_the_peak_of_the_normalised_source(structured_root, mode):
    """``saliency_input="official"``: the box is centred on the first peak of OpenCV's map of the source row's
    normalised float32 HWC image (the official ``saliency_bbox``, Uddin et al., arXiv 2006.01791); the plain
    loader (same seed) gives that image as the graph normalises it. ``mode="batch"`` is the official code: the
    map of the first permuted image decides every row's box."""
    from oracles_saliency import fine_grained_float

    copies = dict(copies=2, copy_mode="batch_aug") if mode == "elem" else {}
    plain = epoch(make(structured_root, batch=6, seed=8, **copies), 1)
    mixed = epoch(make(structured_root, batch=6, seed=8, method="saliencymix", mode=mode, saliency_input="official",
                       p_keep_image=0.3 if mode == "elem" else 0.0, **copies), 1)
    photo_peaks_differ = 0
    for a, b in zip(plain, mixed):
        check_mixed_rows(a, b)
        partner = b.meta["partner"].numpy()
        for r in range(b.images.shape[0]):
            if partner[r] < 0:
                continue
            src = partner[r] if mode == "elem" else partner[0]
            hwc = np.ascontiguousarray(a.images[src].numpy().transpose(1, 2, 0))
            sal = fine_grained_float(hwc)
            ok, cv = cv2.saliency.StaticSaliencyFineGrained_create().computeSaliency(hwc)
            assert ok and np.array_equal(sal, cv)  # the oracle is OpenCV here too
            q = (sal * 255).astype(np.uint8)
            py, px = np.unravel_index(np.argmax(q), q.shape)
            y0, x0, y1, x1 = b.meta["boxes"][r, 0].tolist()
            assert y0 <= py < y1 and x0 <= px < x1
            hy, hx = half_size(y0, y1, py, SIZE), half_size(x0, x1, px, SIZE)
            assert hy is not None and hx is not None, (r, (y0, x0, y1, x1), (py, px))
            if hy != "any" and hx != "any":
                assert hy == hx
            photo = (opencv_saliency(a.images[src]) * 255).astype(np.uint8)
            photo_peaks_differ += np.argmax(photo) != np.argmax(q)
        if mode == "batch":
            assert torch.all(b.meta["boxes"] == b.meta["boxes"][0])
    assert photo_peaks_differ > 0  # the option changes the boxes: the float map is not the photo's


def test_saliency_occlusion_erases_the_max_window(structured_root):
    S, T = 24, 4
    plain = epoch(make(structured_root, batch=5, seed=6), 1)
    occ = epoch(make(structured_root, batch=5, seed=6, method="saliency_occlusion", size=S, stride=T, jitter=0,
                     copies=2, fill=(255, 0, 0)), 1)
    jit = epoch(make(structured_root, batch=5, seed=6, method="saliency_occlusion", size=S, stride=T, jitter=5), 1)
    fill = (np.array([255.0, 0, 0]) - MEAN) / STD
    for a, b, j in zip(plain, occ, jit):
        n = a.images.shape[0]
        for r in range(b.images.shape[0]):
            own = a.images[r % n]
            (y, x), _ = ref.max_window(opencv_saliency(own), S, T)
            assert b.meta["boxes"][r, 0].tolist() == [y, x, y + S, x + S]
            mask = box_mask(b.meta["boxes"][r])
            out = b.images[r].numpy()
            np.testing.assert_allclose(out[:, mask], np.broadcast_to(fill[:, None], (3, mask.sum())), atol=1e-5)
            np.testing.assert_array_equal(out[:, ~mask], own.numpy()[:, ~mask])
            assert float(b.meta["lam"][r]) == 1.0 and int(b.meta["partner"][r]) == -1
        for r in range(n):
            (y, x), _ = ref.max_window(opencv_saliency(a.images[r]), S, T)
            y0, x0, y1, x1 = j.meta["boxes"][r, 0].tolist()
            # jittered by at most 5 px, never leaving the image, always S x S
            assert abs(y0 - y) <= 5 and abs(x0 - x) <= 5 and y1 - y0 == S and x1 - x0 == S
            assert 0 <= y0 and y1 <= SIZE and 0 <= x0 and x1 <= SIZE


@pytest.mark.parametrize("method", ["keep_cutout", "keep_paste"])
def test_keep_methods_pick_regions_by_the_tau_quantile(structured_root, method):
    size, tau = 16, 0.6
    plain = epoch(make(structured_root, batch=5, seed=3), 1)
    kept = epoch(make(structured_root, batch=5, seed=3, method=method, size=size, tau=tau), 1)
    changed_outside = 0
    for a, b in zip(plain, kept):
        for r in range(b.images.shape[0]):
            sal = opencv_saliency(a.images[r])
            scores = ref.keep_scores(sal, size)
            thr = np.quantile(scores, tau)
            y0, x0, y1, x1 = b.meta["boxes"][r, 0].tolist()
            # a candidate: the (clipped) size x size box of a centre pixel, and that centre's score
            cy = y1 - size // 2 if y0 == 0 else y0 + size // 2
            cx = x1 - size // 2 if x0 == 0 else x0 + size // 2
            assert ref.cutout_box(cy, cx, size, SIZE, SIZE) == (y0, x0, y1, x1)
            region = sal[y0:y1, x0:x1].astype(np.float64).sum()  # region score: the saliency sum (Gong et al. Eq. 1)
            assert region == pytest.approx(scores[cy, cx], rel=1e-12)
            mask = box_mask(b.meta["boxes"][r])
            out, own = b.images[r].numpy(), a.images[r].numpy()
            if method == "keep_cutout":  # selective-cut: an unimportant region, erased
                assert region < thr
                assert np.all(out[:, mask] == 0.0)
                np.testing.assert_array_equal(out[:, ~mask], own[:, ~mask])
            else:  # selective-paste: an important region kept from the un-augmented image
                assert region > thr
                np.testing.assert_array_equal(out[:, mask], own[:, mask])
                changed_outside += not np.array_equal(out[:, ~mask], own[:, ~mask])
    if method == "keep_paste":  # RandAugment changed the rest of the image (of most rows)
        assert changed_outside >= 3


@pytest.mark.parametrize("policy", ["rand_augment", "auto_augment"])
def test_auto_augment_changes_pixels_not_the_plan_and_is_seeded(structured_root, policy):
    (plain,) = epoch(make(structured_root, batch=6, seed=3, method="cutmix"), 1)
    (a,) = epoch(make(structured_root, batch=6, seed=3, method="cutmix", auto_augment=policy), 1)
    (b,) = epoch(make(structured_root, batch=6, seed=3, method="cutmix", auto_augment=policy), 1)
    assert torch.equal(a.images, b.images)  # DALI's generator is seeded by the loader's seed
    for key in ("crop", "flip", "partner", "boxes", "lam"):
        assert torch.equal(a.meta[key], plain.meta[key])
    assert not torch.equal(a.images, plain.images)
    (val,) = epoch(make(structured_root, batch=4, train=False, auto_augment=policy), 1)
    (val_plain,) = epoch(make(structured_root, batch=4, train=False), 1)
    assert torch.equal(val.images, val_plain.images)  # validation is never augmented


def test_keep_paste_defaults_to_rand_augment_and_bad_policy_is_named(structured_root):
    assert make(structured_root, method="keep_paste").cfg.auto_augment == "auto_augment"
    with pytest.raises(ValueError, match="auto_augment"):
        make(structured_root, auto_augment="trivial")


def test_validation_runs_no_mixing(structured_root):
    (plain,) = epoch(make(structured_root, batch=4, train=False), 1)
    for method in ("cutmix", "saliencymix"):
        (val,) = epoch(make(structured_root, batch=4, train=False, method=method), 1)
        assert torch.equal(val.images, plain.images) and torch.all(val.meta["partner"] == -1)
        assert torch.all(val.meta["lam"] == 1)


@pytest.mark.parametrize("kw, match", [
    (dict(method="saliencymix", saliency="normgrad"), "saliency"),
    (dict(method="saliencymix", saliency_input="float"), "saliency_input must be one of"),
    (dict(method="saliencymix", saliency="model", saliency_input="official"), "saliency_input='official'.*needs"),
    (dict(method="cutmix", alpha=0.0), "alpha"), (dict(method="saliency_occlusion", stride=0), "stride"),
    (dict(method="saliency_occlusion", jitter=-1), "jitter"), (dict(method="keep_cutout", tau=1.5), "tau"),
    (dict(method="keep_cutout", max_tries=0), "max_tries"), (dict(method="saliency_occlusion", size=100), "size"),
])
def test_bad_arguments(structured_root, kw, match):
    with pytest.raises(ValueError, match=match):
        make(structured_root, **kw)
