"""Attentive CutMix (Walawalkar et al., ICASSP 2020) as a training-side ("fresh") step.

The attention map comes from a *frozen pretrained* feature extractor, i.e. a model, so it is not an
image operator DALI can run in the input graph. As DESIGN.md section 4 allows, the step is applied on
the training side, to the batch the loader produced, with the array kernels of :mod:`kernels`:

1. the batch (normalised NCHW) is resized bilinearly to ``input_size`` (224) and run through the trunk
   of a torchvision classifier loaded from a local checkpoint (no hub download): the children before
   global pooling and the classifier (``children()[:-2]`` of a ResNet), giving ``(B, C, 7, 7)``;
2. attention = the channel mean ``features.mean(1)`` (openmixup ``augments/attentivemix.py`` with
   ``classifiers/mixup_classification.py::_features``; the paper's code xden2331/attentive_cutmix takes
   the last channel instead, a bug);
3. the top-``k`` cells (k = 6 of 49) are **kept** (:func:`kernels.search.topk_cells`), every other cell
   comes from the partner (:func:`kernels.apply.paste_cells` with ``~mask``), the cell grid upsampled
   nearest to the image (:func:`kernels.apply.cell_edges`);
4. ``lam = k / 49`` (exactly :func:`kernels.apply.lam_from_cells` when the image side is a multiple of
   the grid), targets ``lam * t + (1 - lam) * t[partner]`` (smoothed one-hots mix linearly).

The partner is a random permutation of the rows of the same copy (one permutation per copy and batch,
like openmixup's ``randperm``), drawn from the generator passed in (the loader passes one seeded by
``(seed, epoch, batch, shard)``, so a resumed run mixes alike). ``p`` is the probability that a row
(``mode="elem"``) or the whole batch (``mode="batch"``, openmixup) is mixed; ``p_keep_image`` leaves
rows unmixed (Fong & Vedaldi copies).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kernels.apply import cell_edges, lam_from_cells, paste_cells
from kernels.search import topk_cells


def load_trunk(checkpoint, arch: str = "resnet50") -> torch.nn.Module:
    """A torchvision classifier built without weights, loaded from ``checkpoint`` (a state dict or a
    dict holding ``"state_dict"`` / ``"model"``), cut before its global pooling; eval mode, frozen."""
    import torchvision

    path = Path(checkpoint)
    if not path.is_file():
        raise ValueError(f"attention_checkpoint must be a torchvision checkpoint file, {path} does not exist")
    builder = getattr(torchvision.models, arch, None)
    if builder is None or not callable(builder):
        raise ValueError(f"attention_arch must name a torchvision model builder (e.g. 'resnet50'), got {arch!r}")
    model = builder(weights=None)
    if not hasattr(model, "layer4"):
        raise ValueError(f"attention_arch must be a ResNet-style model with layer4 (trunk = children()[:-2]), "
                         f"got {arch!r}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    # the classifier head is not used (and may have any number of classes): load the trunk strictly
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("fc.")]
    if missing or result.unexpected_keys:
        raise ValueError(f"attention_checkpoint {path} does not match attention_arch={arch!r}: missing "
                         f"{missing[:5]}, unexpected {list(result.unexpected_keys)[:5]}")
    trunk = torch.nn.Sequential(*list(model.children())[:-2]).eval()
    for p in trunk.parameters():
        p.requires_grad_(False)
    return trunk


class AttentiveCutMix:
    """Apply Attentive CutMix to a :class:`pipelines.loader.Batch` (see the module docstring).

    Args:
        checkpoint: path of a torchvision checkpoint of ``arch``.
        arch: torchvision builder name (``"resnet50"``: the paper's extractor).
        k: cells kept from the row's own image (6).
        input_size: side the batch is resized to for the extractor (224 -> a 7 x 7 map for a ResNet).
        p: probability that a batch is mixed.
        seed: seed of the partner / ``p`` generator.
    """

    def __init__(self, checkpoint, arch: str = "resnet50", k: int = 6, input_size: int = 224, p: float = 1.0,
                 mode: str = "elem", p_keep_image: float = 0.0, seed: int = 0):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"top_k must be an int >= 0, got {k!r}")
        if isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer)) or input_size < 32:
            raise ValueError(f"input_size must be an int >= 32, got {input_size!r}")
        for name, v in (("p", p), ("p_keep_image", p_keep_image)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {v!r}")
        if mode not in ("elem", "batch"):
            raise ValueError(f"mode must be 'elem' or 'batch', got {mode!r}")
        self.mode = mode
        self.p_keep_image = float(p_keep_image)
        self.trunk = load_trunk(checkpoint, arch)
        self.k = int(k)
        self.input_size = int(input_size)
        self.p = float(p)
        self.rng = np.random.default_rng(seed)

    @torch.no_grad()
    def attention(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, Gh, Gw)`` channel-mean attention of the frozen trunk on the resized batch."""
        dev = images.device
        trunk = self.trunk.to(dev)
        x = images.float()
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = torch.nn.functional.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                                                align_corners=False)
        return trunk(x).mean(1)

    def __call__(self, batch, rng: np.random.Generator | None = None):
        """The mixed batch; ``rng`` draws partners and apply decisions (default: this object's generator)."""
        from pipelines.loader import Batch

        rng = self.rng if rng is None else rng
        images = batch.images
        n, _, h, w = images.shape
        copies = batch.meta["copy"].numpy()
        partner = np.full(n, -1, np.int64)
        for c in np.unique(copies):
            rows = np.flatnonzero(copies == c)
            perm = rows[rng.permutation(rows.size)]
            apply = rng.random(rows.size if self.mode == "elem" else 1) < self.p
            apply = np.broadcast_to(apply, rows.shape) & (rng.random(rows.size) >= self.p_keep_image)
            partner[rows] = np.where(apply, perm, -1)
        att = self.attention(images).cpu().numpy()
        if self.k > att.shape[1] * att.shape[2]:
            raise ValueError(f"top_k={self.k} exceeds the {att.shape[1]}x{att.shape[2]} attention grid")
        keep, _ = topk_cells(att, self.k)
        from_partner = ~keep
        lam = lam_from_cells(from_partner, h, w, partner)
        if images.is_cuda:  # CuPy arrays through DLPack run the CUDA kernel on the same memory
            import cupy

            src = cupy.from_dlpack(images.contiguous())
            mixed = torch.from_dlpack(paste_cells(src, cupy.asarray(partner), cupy.asarray(from_partner),
                                                  layout="NCHW"))
        else:
            mixed = torch.from_numpy(paste_cells(images.contiguous().numpy(), partner, from_partner, layout="NCHW"))
        lam_t = torch.as_tensor(lam, dtype=batch.targets.dtype, device=batch.targets.device)[:, None]
        src_rows = torch.as_tensor(np.where(partner >= 0, partner, np.arange(n)), device=batch.targets.device)
        targets = lam_t * batch.targets + (1 - lam_t) * batch.targets[src_rows]
        meta = dict(batch.meta)
        meta["partner"] = torch.from_numpy(partner)
        meta["lam"] = torch.from_numpy(lam.astype(np.float32))
        meta["boxes"] = torch.from_numpy(_cell_boxes(from_partner, partner, h, w))
        return Batch(mixed, targets, batch.labels, meta)


def _cell_boxes(cell_mask, partner, h, w) -> np.ndarray:
    """(N, K, 4) boxes of the cells pasted from the partner (-1 padded; none where partner is -1)."""
    ye, xe = cell_edges(cell_mask.shape[1], h), cell_edges(cell_mask.shape[2], w)
    n = cell_mask.shape[0]
    k = int(cell_mask.reshape(n, -1).sum(1).max(initial=0))
    out = np.full((n, k, 4), -1, np.int32)
    for r in range(n):
        if partner[r] < 0:
            continue
        ii, jj = np.nonzero(cell_mask[r])
        out[r, :ii.size] = np.stack([ye[ii], xe[jj], ye[ii + 1], xe[jj + 1]], -1)
    return out
