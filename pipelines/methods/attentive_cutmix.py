"""Attentive CutMix (Walawalkar et al. 2020, "Attentive CutMix: An Enhanced Data Augmentation Approach for
Deep Learning Based Image Classification", arXiv 2003.13048) as a training-side ("fresh") step.

The attention map comes from a *frozen pretrained* feature extractor, i.e. a model, so it is not an image
operator the DALI graph can run: the loader applies :meth:`AttentiveCutMix.train_step` to the batch the
graph produced, with the array kernels of :mod:`kernels`:

1. the batch (normalised NCHW) is resized bilinearly to ``input_size`` (224) and run through the trunk of a
   torchvision classifier loaded from a local checkpoint (no hub download): the children before global
   pooling and the classifier (``children()[:-2]`` of a ResNet), giving ``(B, C, 7, 7)``;
2. attention = the channel mean ``features.mean(1)`` (openmixup ``augments/attentivemix.py`` with
   ``classifiers/mixup_classification.py::_features``; the paper's code xden2331/attentive_cutmix takes the
   last channel instead, a bug);
3. the top-``top_k`` cells (6 of 49) are **kept** (:func:`kernels.search.topk_cells`), every other cell
   comes from the partner (:func:`kernels.apply.cell_mask` + :func:`kernels.apply.occlude`), the cell grid
   upsampled nearest to the image;
4. ``lam = k / 49`` (the exact share of the kept pixels, :func:`kernels.apply.lam_from_mask`, when the side is a
   multiple of the grid).

The partner (a permutation of the copy's rows, openmixup's ``randperm``) and which rows are mixed are drawn
on the host with every other parameter of the batch (:meth:`plan`), so a resumed run mixes alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernels.areas import cell_edges
from kernels.checks import check_int
from kernels.search import topk_cells
from pipelines.methods.base import CopyPlan, Method

_TRUNKS: dict = {}  # (checkpoint, arch) -> frozen trunk, loaded once per process on first use


@dataclass(frozen=True)
class AttentiveCutMix(Method):
    """Options: ``checkpoint`` (a local torchvision checkpoint of ``arch``, required), ``arch`` (``"resnet50"``,
    the paper's extractor), ``top_k`` (cells kept from the row's own image, 6), ``input_size`` (the side the
    batch is resized to for the extractor: 224 gives a 7 x 7 map on a ResNet)."""

    name = "attentive_cutmix"

    checkpoint: str | None = None
    arch: str = "resnet50"
    top_k: int = 6
    input_size: int = 224

    def check(self):
        if self.checkpoint is None or not Path(self.checkpoint).is_file():
            raise ValueError(f"attentive_cutmix needs checkpoint= a local torchvision checkpoint file of arch "
                             f"(nothing is downloaded), got {self.checkpoint!r}")
        object.__setattr__(self, "checkpoint", str(self.checkpoint))
        check_int("top_k", self.top_k, lo=0)
        check_int("input_size", self.input_size, lo=32)
        self.trunk()  # a checkpoint that does not fit arch fails here, before any batch

    def draw(self, rng, rows, size):
        plan = CopyPlan.whole(rows)
        plan.partner = rng.permutation(rows).astype(np.int32)
        return plan

    # torch and torchvision are imported inside the training-side functions: the reader workers unpickle this
    # method and never need them (see pipelines.methods.saliency_guided)
    def trunk(self):
        key = (self.checkpoint, self.arch)
        if key not in _TRUNKS:
            _TRUNKS[key] = load_trunk(self.checkpoint, self.arch)
        return _TRUNKS[key]

    def attention(self, images):
        """``(N, Gh, Gw)`` channel-mean attention of the frozen trunk on the resized batch."""
        import torch

        trunk = self.trunk().to(images.device)
        x = images.float()
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = torch.nn.functional.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                                                align_corners=False)
        with torch.no_grad():
            return trunk(x).mean(1)

    def train_step(self, batch, targets):
        """The mixed batch: rows with a partner (``meta["partner"]``, a batch row) keep their top-k cells and
        take the rest from the partner; ``lam``, ``boxes`` (the pasted cells) and the soft ``targets`` (the
        loader's rule, ``targets(labels, partner_labels, lam)``) follow."""
        import torch

        from kernels.apply import cell_mask, lam_from_mask, occlude

        images = batch.images
        n, _, h, w = images.shape
        partner = batch.meta["partner"].numpy().astype(np.int64)
        att = self.attention(images).cpu().numpy()
        if self.top_k > att.shape[1] * att.shape[2]:
            raise ValueError(f"top_k={self.top_k} exceeds the {att.shape[1]}x{att.shape[2]} attention grid")
        keep, _ = topk_cells(att, self.top_k)
        from_partner = ~keep
        partner_t = torch.as_tensor(partner, device=images.device)
        mask = cell_mask(torch.as_tensor(from_partner, device=images.device), h, w) & (partner_t >= 0)[:, None, None]
        mixed = occlude(images, mask, partner=partner_t)
        lam = lam_from_mask(mask).to(torch.float32).cpu()
        labels = batch.labels
        partner_labels = labels[torch.as_tensor(np.where(partner >= 0, partner, np.arange(n)), device=labels.device)]
        return batch.replace(images=mixed, targets=targets(labels, partner_labels, lam).to(batch.targets.device),
                             meta={"lam": lam, "boxes": torch.from_numpy(_cell_boxes(from_partner, partner, h, w))})


def load_trunk(checkpoint, arch: str = "resnet50"):
    """A torchvision classifier built without weights, loaded from ``checkpoint`` (a state dict or a
    dict holding ``"state_dict"`` / ``"model"``), cut before its global pooling; eval mode, frozen."""
    import torch
    import torchvision

    path = Path(checkpoint)
    if not path.is_file():
        raise ValueError(f"checkpoint must be a torchvision checkpoint file, {path} does not exist")
    builder = getattr(torchvision.models, arch, None)
    if builder is None or not callable(builder):
        raise ValueError(f"arch must name a torchvision model builder (e.g. 'resnet50'), got {arch!r}")
    model = builder(weights=None)
    if not hasattr(model, "layer4"):
        raise ValueError(f"arch must be a ResNet-style model with layer4 (trunk = children()[:-2]), "
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
        raise ValueError(f"checkpoint {path} does not match arch={arch!r}: missing "
                         f"{missing[:5]}, unexpected {list(result.unexpected_keys)[:5]}")
    trunk = torch.nn.Sequential(*list(model.children())[:-2]).eval()
    for p in trunk.parameters():
        p.requires_grad_(False)
    return trunk


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
