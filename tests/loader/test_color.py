"""ColorJitter + PCA Lighting in the graph (``color="clovaai"``) against clovaai/CutMix-PyTorch's ``utils.py`` restated
step by step (``tests/oracles.py``): the crop's uint8 pixels / 255, the row's random order of brightness, contrast and
saturation lerps, the PCA noise, then ``Normalize`` -- and, with CutMix, the partner's pasted pixels carry the
partner's own colour (clovaai transforms each image in the dataset, before CutMix mixes the batch).

The row's draws are re-drawn from the batch's generator (``plan_batch``); the crops and flips are the ones of
``color=None`` (the colour draws come last), so the plain batch gives the uint8 crops."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import oracles as ref
from helpers import MEAN, STD, make
from kernels.color import STEPS, draw_color
from pipelines.loader.plan import batch_rng, plan_batch


def draws(ld, batch):
    """The colour draws of batch 0 of epoch 0, as plan_batch makes them (after every other draw)."""
    sizes = batch.meta["image_size"][: ld.batch_size].numpy()
    rng = batch_rng(ld.seed, 0, 0, 0)
    plan_batch(ld.cfg.__class__(**{**ld.cfg.__dict__, "color_jitter": (0.0,) * 3, "lighting": 0.0}), rng,
               sizes[:, 0], sizes[:, 1])
    return draw_color(rng, ld.batch_size, ld.cfg.color_jitter, ld.cfg.lighting)


def oracle(u8_chw, d, i):
    steps = [STEPS[s] for s in d["order"][i] if s >= 0]
    x = ref.clovaai_lighting(ref.clovaai_color_jitter(u8_chw / 255.0, steps, dict(zip(STEPS, d["alpha"][i]))),
                             d["light"][i])
    return (x - (MEAN / 255)[:, None, None]) / (STD / 255)[:, None, None]


@pytest.mark.parametrize("method", ["none", "cutmix"])
def test_graph_colour_is_clovaais_steps(structured_root, method):
    kw = dict(batch=6, seed=13, method=method)
    plain = next(iter(make(structured_root, **kw)))
    ld = make(structured_root, color="clovaai", **kw)
    colored = next(iter(ld))
    assert torch.equal(colored.meta["crop"], plain.meta["crop"]) and torch.equal(colored.meta["boxes"], plain.meta["boxes"])
    d = draws(ld, colored)
    crops = next(iter(make(structured_root, batch=6, seed=13))).images.numpy()  # no method: every row its own crop
    u8 = np.rint(crops * STD[None, :, None, None] + MEAN[None, :, None, None])  # the rows are (x - mean) / std
    want = np.stack([oracle(u8[i], d, i) for i in range(6)])
    partner = colored.meta["partner"].numpy()
    for r in range(6):
        if partner[r] >= 0:
            y0, x0, y1, x1 = colored.meta["boxes"][r, 0].tolist()
            want[r][:, y0:y1, x0:x1] = oracle(u8[partner[r]], d, partner[r])[:, y0:y1, x0:x1]
    np.testing.assert_allclose(colored.images.numpy(), want, atol=2e-4)
    assert np.abs(colored.images.numpy() - plain.images.numpy()).max() > 0.05  # the colour did change the rows


def test_colour_options_are_checked(structured_root):
    for bad in ({"jitter": 1.5}, {"hue": 0.1}, "timm", {"jitter": (0.4, 0.4)}, {"lighting": -0.1}):
        with pytest.raises(ValueError, match="color|lighting"):
            make(structured_root, color=bad)
