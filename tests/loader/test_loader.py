"""OcclusionLoader against independent oracles: PIL decode + crop + resize for pixels, painted box
masks for the occluded regions, the Cutout / Hide-and-Seek box rules restated in NumPy, and set
arithmetic for shards and resume."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import MEAN, SIZE, STD, box_mask, epoch, make, reference_pixels
from pipelines import OcclusionLoader

@pytest.mark.parametrize("kw", [dict(), dict(copies=2, copy_mode="batch_aug"), dict(train=False)])
def test_pixels_match_pil_reference(structured_root, kw):
    loader = make(structured_root, **kw)
    paths = loader._source.paths
    batch = next(iter(loader))
    for r in range(batch.images.shape[0]):
        sid, crop, flip = int(batch.meta["sample_id"][r]), batch.meta["crop"][r], int(batch.meta["flip"][r])
        out = batch.images[r].numpy()
        good = np.abs(out - reference_pixels(paths[sid], crop, flip)).mean()
        wrong_flip = np.abs(out - reference_pixels(paths[sid], crop, 1 - flip)).mean()
        assert good < 0.02, (r, good)
        assert wrong_flip > 10 * good
    if not kw.get("train", True):
        assert batch.meta["flip"].sum() == 0
    assert batch.images.dtype == torch.float32 and batch.images.shape[1:] == (3, SIZE, SIZE)


def test_crop_windows_follow_random_resized_crop_rule(structured_root):
    loader = make(structured_root, batch=7, copies=3, copy_mode="batch_aug")
    heights = {}
    for path in loader._source.paths:
        with Image.open(path) as im:
            heights[path] = im.size[::-1]
    for batch in epoch(loader):
        for r in range(batch.images.shape[0]):
            h_img, w_img = heights[loader._source.paths[int(batch.meta["sample_id"][r])]]
            y0, x0, h, w = (int(v) for v in batch.meta["crop"][r])
            assert 0 <= y0 and y0 + h <= h_img and 0 <= x0 and x0 + w <= w_img and h > 0 and w > 0
            area = h * w / (h_img * w_img)
            ratio = w / h
            # Either a draw inside scale x ratio (rounding tolerance), or torchvision's fallback.
            inside = 0.08 - 0.02 <= area <= 1.0 and 0.75 * 0.95 <= ratio <= 4 / 3 * 1.05
            assert inside or (h == h_img or w == w_img)


def test_cutout_regions_exact(structured_root):
    plain = epoch(make(structured_root, seed=3))
    cut = epoch(make(structured_root, method="cutout", holes=2, size=20, seed=3))
    assert len(plain) == len(cut)
    half = 20 // 2
    for a, b in zip(plain, cut):
        assert torch.equal(a.meta["crop"], b.meta["crop"]) and torch.equal(a.meta["flip"], b.meta["flip"])
        for r in range(b.images.shape[0]):
            boxes = b.meta["boxes"][r].numpy()
            assert boxes.shape == (2, 4)
            for y0, x0, y1, x1 in boxes:
                # Cutout rule (uoguelph-mlrg/Cutout): clip(c -+ size//2) for an integer centre in [0, S).
                for lo, hi in ((y0, y1), (x0, x1)):
                    centre = lo + half if lo > 0 else hi - half
                    assert 0 <= centre < SIZE and lo == max(centre - half, 0) and hi == min(centre + half, SIZE)
            mask = box_mask(boxes)
            out, ref = b.images[r].numpy(), a.images[r].numpy()
            assert np.all(out[:, mask] == 0.0)
            assert np.array_equal(out[:, ~mask], ref[:, ~mask])
        assert torch.all(b.meta["lam"] == 1) and torch.all(b.meta["partner"] == -1)


def test_hide_and_seek_grid_rule(structured_root):
    loader = make(structured_root, batch=8, method="hide_and_seek", patch_sizes=(16, 24), p_keep_patch=0.5,
                  fill=(255, 0, 0), seed=5)
    fill = (np.array([255.0, 0, 0]) - MEAN) / STD
    plain = epoch(make(structured_root, batch=8, seed=5))
    hidden = total = 0
    for a, b in zip(plain, epoch(loader)):
        for r in range(b.images.shape[0]):
            boxes = b.meta["boxes"][r].numpy()
            boxes = boxes[boxes[:, 0] >= 0]
            sides = {int(max(y1 - y0, x1 - x0)) for y0, x0, y1, x1 in boxes if y1 < SIZE and x1 < SIZE}
            assert len(sides) <= 1 and sides <= {16, 24}
            s = sides.pop() if sides else None
            if s is not None:
                for y0, x0, y1, x1 in boxes:  # cells of an S-grid anchored at (0, 0), clipped at the border
                    assert y0 % s == 0 and x0 % s == 0 and y1 == min(y0 + s, SIZE) and x1 == min(x0 + s, SIZE)
                hidden += len(boxes)
                total += int(np.ceil(SIZE / s)) ** 2
            mask = box_mask(boxes)
            out = b.images[r].numpy()
            assert np.allclose(out[:, mask], fill[:, None], atol=1e-5)
            assert np.array_equal(out[:, ~mask], a.images[r].numpy()[:, ~mask])
    assert 0.3 < hidden / total < 0.7


def test_p_and_p_keep_image(structured_root):
    none_occluded = epoch(make(structured_root, method="cutout", p=0.0))
    assert all(torch.all(b.meta["boxes"] == -1) for b in none_occluded)
    kept = epoch(make(structured_root, method="cutout", copies=2, p_keep_image=1.0))
    assert all(torch.all(b.meta["boxes"] == -1) for b in kept)


def test_joint_copies_share_crop_and_differ_in_occlusion(structured_root):
    loader = make(structured_root, batch=5, method="cutout", size=24, copies=3, copy_mode="joint")
    batch = next(iter(loader))
    b = 5
    assert batch.images.shape[0] == 15
    assert torch.equal(batch.meta["copy"], torch.arange(3).repeat_interleave(b))
    for c in range(1, 3):
        rows = slice(c * b, (c + 1) * b)
        assert torch.equal(batch.meta["sample_id"][rows], batch.meta["sample_id"][:b])
        assert torch.equal(batch.meta["crop"][rows], batch.meta["crop"][:b])
        assert torch.equal(batch.meta["flip"][rows], batch.meta["flip"][:b])
        # Outside both copies' boxes the pixels are the same image.
        for i in range(b):
            keep = ~(box_mask(batch.meta["boxes"][i]) | box_mask(batch.meta["boxes"][c * b + i]))
            assert np.array_equal(batch.images[i].numpy()[:, keep], batch.images[c * b + i].numpy()[:, keep])
    assert not torch.equal(batch.meta["boxes"][:b], batch.meta["boxes"][b:2 * b])


def test_batch_mode_one_box_per_batch(structured_root):
    for batch in epoch(make(structured_root, batch=6, method="cutout", mode="batch", copies=2)):
        boxes = batch.meta["boxes"]
        n = batch.images.shape[0] // 2
        assert torch.all(boxes[:n] == boxes[0]) and torch.all(boxes[n:] == boxes[n])


def test_soft_targets_with_smoothing(structured_root):
    loader = make(structured_root, label_smoothing=0.1)
    batch = next(iter(loader))
    k = 3
    expected = np.full((len(batch.labels), k), 0.1 / k)
    expected[np.arange(len(batch.labels)), batch.labels.numpy()] = 0.9 + 0.1 / k
    assert np.allclose(batch.targets.numpy(), expected)
    images, targets = batch
    assert images is batch.images and targets is batch.targets


def test_same_seed_same_batches_other_seed_differs(structured_root):
    a = epoch(make(structured_root, method="hide_and_seek", seed=11))
    b = epoch(make(structured_root, method="hide_and_seek", seed=11))
    c = epoch(make(structured_root, method="hide_and_seek", seed=12))
    assert all(torch.equal(x.images, y.images) and torch.equal(x.meta["sample_id"], y.meta["sample_id"])
               for x, y in zip(a, b))
    assert not all(torch.equal(x.meta["sample_id"], y.meta["sample_id"]) for x, y in zip(a, c))


def test_epochs_reshuffle_and_cover_everything(structured_root):
    loader = make(structured_root, batch=4)
    n = loader.dataset_size
    e0 = torch.cat([b.meta["sample_id"] for b in loader]).tolist()
    e1 = torch.cat([b.meta["sample_id"] for b in loader]).tolist()
    assert sorted(e0) == sorted(e1) == list(range(n)) and e0 != e1
    assert len(loader) == int(np.ceil(n / 4))


@pytest.mark.parametrize("policy", ["partial", "drop", "pad"])
def test_two_shards_serve_every_sample_once(structured_root, policy):
    shards = [make(structured_root, batch=4, num_shards=2, shard_id=k, last_batch=policy, seed=7)
              for k in range(2)]
    n = shards[0].dataset_size
    seen = []
    for loader in shards:
        batches = epoch(loader)
        assert len(batches) == len(loader)
        for b in batches:
            valid = b.meta["valid"].bool()
            seen += b.meta["sample_id"][valid].tolist()
            if policy != "partial":
                assert b.images.shape[0] == 4
    if policy == "drop":
        assert len(shards[0]) == len(shards[1]) == (n // 2) // 4
        assert len(seen) == len(set(seen)) == 2 * len(shards[0]) * 4
    else:
        assert sorted(seen) == list(range(n))
    if policy == "pad":
        assert len(shards[0]) == len(shards[1])


def test_resume_mid_epoch_reproduces_the_rest(structured_root):
    kw = dict(batch=3, method="cutout", copies=2, copy_mode="batch_aug", seed=9)
    full = make(structured_root, **kw)
    epoch(full)                      # epoch 0
    reference = epoch(full)          # epoch 1
    first = make(structured_root, **kw)
    epoch(first)
    it = iter(first)
    for _ in range(2):
        next(it)
    state = first.state_dict()
    assert state["epoch"] == 1 and state["batch"] == 2
    resumed = make(structured_root, **kw)
    resumed.load_state_dict(state)
    rest = epoch(resumed)
    assert len(rest) == len(reference) - 2
    for x, y in zip(rest, reference[2:]):
        assert torch.equal(x.meta["sample_id"], y.meta["sample_id"])
        assert torch.equal(x.images, y.images)


def test_resume_rejects_other_configuration(structured_root):
    state = make(structured_root, seed=1).state_dict()
    with pytest.raises(ValueError, match="seed"):
        make(structured_root, seed=2).load_state_dict(state)


def test_float16_output(structured_root):
    batch = next(iter(make(structured_root, dtype="float16")))
    assert batch.images.dtype == torch.float16


@pytest.mark.parametrize("kw, match", [
    (dict(copies=0), "copies"), (dict(method="cutout", size=0), "size"), (dict(p=1.5), "p must"),
    (dict(p_keep_image=-0.1), "p_keep_image"), (dict(method="no_such_method"), "unknown method"),
    (dict(mode="pair"), "mode"), (dict(copy_mode="x"), "copy_mode"),
    (dict(method="cutout", fill="red"), "fill"), (dict(method="hide_and_seek", fill=300), "fill"),
    (dict(method="cutout", fill=(1, 2)), "fill"), (dict(fill=0), "no option.*fill"),
    (dict(num_shards=2, shard_id=2), "shard_id"), (dict(last_batch="keep"), "last_batch"),
    (dict(label_smoothing=1.0), "label_smoothing"), (dict(runtime=dict(verify="quick")), "verify"),
    (dict(runtime=dict(threads=2)), "no field.*threads"),
    (dict(p_keep_patch=2.0), "p_keep_patch"), (dict(holes=0), "holes"),
])
def test_bad_arguments_raise_clear_errors(structured_root, kw, match):
    with pytest.raises(ValueError, match=match):
        make(structured_root, **kw)


def test_bad_batch_size(structured_root):
    with pytest.raises(ValueError, match="batch_size"):
        make(structured_root, batch=0)


def test_loader_arguments_are_not_method_options():
    """The loader's own keyword arguments say what a batch is (issue 10: about 15 of them; issue 22 added
    ``color``); every option of a method (``fill``, ``saliency``, ``bank``, ...) goes to the method, and how the
    loader runs goes in ``runtime``, so no name can mean two things."""
    import inspect

    from pipelines.methods import REGISTRY

    params = inspect.signature(OcclusionLoader).parameters
    own = [n for n, p in params.items() if p.kind == p.KEYWORD_ONLY]
    assert len(own) <= 18, own
    for cls in REGISTRY.values():
        assert not set(own) & set(cls.options()), (cls.name, set(own) & set(cls.options()))


def test_runtime_is_the_loaders_and_leaves_batches_unchanged(structured_root):
    from pipelines import Runtime

    a = make(structured_root, batch=4, method="cutout", size=16, seed=2, runtime=dict(prefetch=1, py_workers=1))
    b = make(structured_root, batch=4, method="cutout", size=16, seed=2,
             runtime=Runtime(num_threads=1, py_workers=2, prefetch=3, verify="header"))
    assert a.runtime == Runtime(num_threads=2, py_workers=1, prefetch=1)
    assert b.runtime.py_workers == 2 and b.runtime.verify == "header"
    for x, y in zip(epoch(a), epoch(b)):
        torch.testing.assert_close(x.images, y.images, rtol=0, atol=0)
        torch.testing.assert_close(x.meta["boxes"], y.meta["boxes"], rtol=0, atol=0)
