"""Attentive CutMix (Walawalkar et al. 2020, "Attentive CutMix: An Enhanced Data Augmentation Approach for
Deep Learning Based Image Classification", arXiv 2003.13048).

The rule (openmixup ``augments/attentivemix.py`` with ``classifiers/mixup_classification.py::_features``; the
paper's code xden2331/attentive_cutmix takes the last channel instead of the mean, a bug):

1. attention = the channel mean ``features.mean(1)`` of a ResNet's last conv block, 7 x 7 at 224 px;
2. the top-``top_k`` cells (6 of 49) of each row's own attention are **kept**, every other cell comes from the
   partner (a permutation of the copy's rows, openmixup's ``randperm``), the cell grid upsampled nearest to
   the image;
3. ``lam = k / 49``, the exact share of the kept pixels (cells of ``S // 7`` pixels, the last one taking the
   remainder, when the side is not a multiple of the grid).

The search is the graph's ``fn.occlusion.box_search(method="topk_cells")``: it returns the boxes of the cells
*outside* the top-k (the partner's), so the apply is the CutMix paste of ``normalize_occlude`` and ``meta``
``boxes`` / ``lam`` mean what they mean for every other method. Where the attention comes from is the
``saliency`` option, as for every saliency-guided method:

* ``checkpoint=PATH`` (the paper): a *frozen pretrained* torchvision classifier loaded from a local file (no
  download) computes the attention of the batch resized to ``input_size`` (:class:`CheckpointAttention`), on
  the training side before the loader yields the batch;
* ``saliency="model"``: the model being trained, in the same step (``loader.occlude(batch, Attention(model)
  (images))``, or ``SaliencyStep``);
* ``saliency="bank"``: the model being trained, through the saliency bank: the attention pushed at the
  sample's previous visit steers the graph's top-k cells (on the GPU too).

The partner and which rows are mixed are drawn on the host with every other parameter of the batch, so a
resumed run mixes alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dali_ops import mixing
from kernels.checks import check_int
from pipelines.methods.base import CopyPlan, InputSpec
from pipelines.methods.saliency_guided import SaliencyGuided
from pipelines.saliency.base import SaliencySource
from pipelines.saliency.sources import ImageSaliency

PARTNER = InputSpec("partner", np.int32, whole=-1)
MAP_INDEX = InputSpec("map_index", np.int32, whole=-1)

_TRUNKS: dict = {}  # (checkpoint, arch) -> frozen trunk, loaded once per process on first use


@dataclass(frozen=True)
class CheckpointAttention(SaliencySource):
    """Attentive CutMix's extractor: the channel mean of the last conv block of a frozen torchvision ``arch``
    loaded from the local ``checkpoint`` file, on the batch resized bilinearly to ``input_size`` (224: a 7 x 7
    map on a ResNet). Its maps are computed on the training side by the source itself (``own_maps``), before
    the loader yields the batch."""

    name = "checkpoint"
    in_graph = False
    own_maps = True

    checkpoint: str = ""
    arch: str = "resnet50"
    input_size: int = 224

    def __post_init__(self):
        if not Path(self.checkpoint).is_file():
            raise ValueError(f"attentive_cutmix needs checkpoint= a local torchvision checkpoint file of arch "
                             f"(nothing is downloaded), got {self.checkpoint!r}")
        check_int("input_size", self.input_size, lo=32)
        self.trunk()  # a checkpoint that does not fit arch fails here, before any batch

    # torch and torchvision are imported inside the training-side functions: the reader workers unpickle this
    # source with the method and never need them (see pipelines.methods.saliency_guided)
    def trunk(self):
        key = (self.checkpoint, self.arch)
        if key not in _TRUNKS:
            _TRUNKS[key] = load_trunk(self.checkpoint, self.arch)
        return _TRUNKS[key]

    def maps(self, images):
        """``(N, Gh, Gw)`` channel-mean attention of the frozen trunk on the resized rows, on their device."""
        import torch

        trunk = self.trunk().to(images.device)
        x = images.float()
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = torch.nn.functional.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                                                align_corners=False)
        with torch.no_grad():
            return trunk(x).mean(1)


@dataclass(frozen=True)
class AttentiveCutMix(SaliencyGuided):
    """Options: ``top_k`` (cells kept from the row's own image, 6), ``grid`` (cells per side, 7: a ResNet's 7 x 7
    final map at 224 px), and where the attention comes from: ``checkpoint`` (a local torchvision checkpoint of
    ``arch``, ``"resnet50"`` the paper's extractor, run at ``input_size`` 224) or ``saliency="model"`` /
    ``"bank"`` (the model being trained, with :class:`~pipelines.saliency.extractors.Attention` or
    ``SaliencyTap(model, "attention")``). Exactly one of ``checkpoint`` and ``saliency`` is given."""

    name = "attentive_cutmix"
    inputs = (PARTNER, MAP_INDEX)
    paste_partner = "partner"

    saliency: object = None
    checkpoint: str | None = None
    arch: str = "resnet50"
    top_k: int = 6
    grid: int = 7
    input_size: int = 224

    def check(self):
        grid = check_int("grid", self.grid)
        check_int("top_k", self.top_k, 0, grid * grid)
        if self.checkpoint is not None:
            source = CheckpointAttention(str(self.checkpoint), self.arch, self.input_size)
            if self.saliency is not None and self.saliency != source:
                raise ValueError(f"attentive_cutmix takes its attention from checkpoint= (a frozen extractor, the "
                                 f"paper's) or from saliency= (the model being trained), not both; got "
                                 f"checkpoint={self.checkpoint!r} and saliency={self.saliency!r}")
            object.__setattr__(self, "checkpoint", str(self.checkpoint))
            object.__setattr__(self, "source", source)
            return
        if self.saliency is None:
            raise ValueError("attentive_cutmix needs checkpoint= a local torchvision checkpoint file (a frozen "
                             "pretrained extractor, the paper's) or saliency='model' / 'bank' (the attention of the "
                             "model being trained: loader.occlude in the same step, or the saliency bank)")
        super().check()
        if isinstance(self.source, ImageSaliency):
            raise ValueError("attentive_cutmix's cells follow a model's attention: give checkpoint=, "
                             "saliency='model' or saliency='bank', not an image saliency")

    def check_output_size(self, size):
        if self.grid > size:
            raise ValueError(f"grid must be <= output_size={size}, got {self.grid}")

    def draw(self, rng, rows, size):
        perm = rng.permutation(rows).astype(np.int32)
        plan = CopyPlan.whole(rows, 1, {PARTNER: perm, MAP_INDEX: np.arange(rows, dtype=np.int32)})
        plan.partner = perm
        return plan

    def search_kwargs(self, draws, size):
        return dict(method="topk_cells", grid=self.grid, top_k=self.top_k, image_size=size)

    def search(self, g, sal, nodes):
        return mixing.topk_cells(sal, nodes[MAP_INDEX], grid=self.grid, top_k=self.top_k, device=g.device)

    def apply(self, g, u8, mirror, nodes, boxes):
        return g.normalize(u8, boxes, g.on(nodes[PARTNER]), mirror=mirror)

    def resample(self, maps, size):
        """A map of at least the grid's size is read as it is (a 7 x 7 attention map is its own grid, as
        openmixup's ``topk`` on the 7 x 7 mean); a coarser one (a ResNet's 4 x 4 at 128 px) is first resized
        bilinearly to the output size."""
        if min(maps.shape[-2:]) >= self.grid:
            return maps
        return super().resample(maps, size)


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
