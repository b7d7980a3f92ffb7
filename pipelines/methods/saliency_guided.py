"""The base of the saliency-guided methods (SaliencyMix, Fong & Vedaldi's saliency occlusion, KeepAugment,
KeepCutMix): a search on a saliency map, then an apply, in the graph or on the training side.

Method modules import torch only inside their training-side functions: the reader workers unpickle the methods,
and a worker without torch starts in about a second with about 130 MB where one with torch (and torchvision)
takes three seconds and 800 MB (``/usr/bin/time python -c "import torchvision"`` on this machine).

Where the map comes from is the method's ``saliency`` option, a source object
(:mod:`pipelines.saliency.sources`: ``ImageSaliency``, ``ModelSaliency``, ``BankSaliency``, or any
:class:`~pipelines.saliency.base.SaliencySource`) or its shorthand ``"image"`` / ``"model"`` / ``"bank"``. A source
whose map exists in the graph feeds the method's search operator there; the model's own map (``in_graph``
False) arrives on the training side, where ``loader.occlude(batch, maps)`` runs :meth:`SaliencyGuided.occlude`:
the *same* search operator (``fn.occlusion.box_search``, called eagerly through DALI's dynamic mode
``nvidia.dali.experimental.dynamic``) on the same draws, then the graph's erase / paste rule in torch
(:mod:`kernels.apply`) on the batch's device.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

import dali_ops
from kernels.boxes import cutmix_side
from pipelines.methods.base import Fragment, Method
from pipelines.saliency.sources import saliency_source


def eager_box_search(maps, draws, map_index, **kwargs):
    """``fn.occlusion.box_search`` (the graph's search operator) called eagerly through DALI's dynamic mode on the
    maps' device: ``maps`` ``(B, H, W)`` (a torch tensor, CPU or CUDA, handed to DALI by DLPack: no host copy),
    ``draws`` and ``map_index`` the per-row draws and map indices (host tensors or arrays), ``kwargs`` as the
    operator's (``method``, ``size``, ...; a per-row ``size`` array becomes an argument input). On a GPU the
    operator runs on torch's current stream. Returns the ``(B, K, 4)`` int32 boxes as a torch tensor on the
    maps' device (K = 1, or ``grid * grid - top_k`` for ``topk_cells``)."""
    import torch

    dali_ops.load()  # before dynamic mode's first import: it lists the operators once, then ndd.occlusion is missing
    import nvidia.dali.experimental.dynamic as ndd

    def host(a):  # a CPU argument of the operator (map_index, per-row sizes): host data already
        return ndd.as_batch(torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a,
                                            dtype=torch.int32).contiguous())

    dev = maps.device
    drawn = torch.as_tensor(draws, dtype=torch.int32).to(dev).contiguous()
    with _eval_context(dev):  # the GPU tensors are exported to DALI on the context's stream (torch's)
        kwargs = {k: host(v) if isinstance(v, (np.ndarray, torch.Tensor)) else v for k, v in kwargs.items()}
        out = ndd.occlusion.box_search(ndd.as_batch(maps.to(torch.float32).contiguous()), ndd.as_batch(drawn),
                                       host(map_index), device="gpu" if dev.type == "cuda" else "cpu", **kwargs)
        return out.torch().to(dev)


_CONTEXTS: dict = {}


def _eval_context(dev):
    """DALI dynamic mode's evaluation context for ``dev``: for a GPU, one on torch's current stream (cached per
    stream), so the search is ordered with the model's work without a synchronisation."""
    import contextlib

    import torch

    if dev.type != "cuda":
        return contextlib.nullcontext()
    import nvidia.dali.experimental.dynamic as ndd

    stream = torch.cuda.current_stream(dev)
    key = (dev.index, stream.cuda_stream)
    if key not in _CONTEXTS:
        _CONTEXTS[key] = ndd.EvalContext(device_id=dev.index, cuda_stream=stream)
    return _CONTEXTS[key]


def partner_and_cutmix_side(method: Method, rng, rows: int, size: int):
    """The CutMix draws a CutMix-sized saliency method shares (SaliencyMix, KeepCutMix): a partner
    permutation of the copy's rows, then ``lam ~ Beta(alpha, alpha)`` (one per batch with
    ``mode="batch"``) turned into the box side ``int(size * sqrt(1 - lam))`` per row."""
    perm = rng.permutation(rows).astype(np.int32)
    lam = rng.beta(method.alpha, method.alpha, size=1 if method.per_batch() else rows)
    return perm, np.broadcast_to(cutmix_side(size, lam), (rows,)).astype(np.int32)


@dataclass(frozen=True)
class SaliencyGuided(Method):
    """A method whose box is searched on a saliency map.

    ``saliency``: the map's source (see the module docstring). ``bank`` (with ``saliency="bank"`` only): the
    saliency bank's file path or a :class:`~pipelines.saliency.bank.BankSaliency`; ``None``: a temporary
    file, one process only. The loader opens it and starts it empty unless ``load_state_dict`` restores it.
    ``source`` (not an option) is the resolved source object.

    A subclass names the InputSpec of its search's draws (``search_draws``) and of its paste partner
    (``paste_partner``, ``None``: it erases with ``fill``), and writes :meth:`search` (the graph's search
    operator), :meth:`apply` (the graph's apply) and :meth:`search_kwargs` (the same search, eagerly)."""

    search_draws: ClassVar[str] = ""
    paste_partner: ClassVar[str | None] = None

    saliency: object = "image"
    bank: object = None

    def check(self):
        object.__setattr__(self, "source", saliency_source(self.saliency, self.bank, owner=self.name))

    def with_source(self, source) -> "SaliencyGuided":
        """The same method reading ``source`` (a loader's bound copy of its source)."""
        return dataclasses.replace(self, saliency=source, bank=None)

    # -- graph ----------------------------------------------------------------------------------
    def graph(self, g, u8, mirror, nodes):
        sal = g.saliency(u8, mirror)
        if sal is None:  # the model's map: the training side searches (loader.occlude)
            return self.defer(g, u8, mirror, nodes)
        boxes = self.search(g, sal, nodes)
        return Fragment(self.apply(g, u8, mirror, nodes, boxes), boxes)

    def search(self, g, sal, nodes):
        """The ``(1, 4)`` box node of each row from its map ``sal``."""
        raise NotImplementedError

    def apply(self, g, u8, mirror, nodes, boxes):
        """The row's normalised image with its searched ``boxes`` applied."""
        raise NotImplementedError

    def defer(self, g, u8, mirror, nodes) -> Fragment:
        """The copy's fragment when its map comes from the training side: the clean rows and the draws."""
        return Fragment(g.clean(u8, mirror), draws=nodes)

    # -- training side (a source that is not in the graph) --------------------------------------
    def search_kwargs(self, draws: dict, size: int) -> dict:
        """``fn.occlusion.box_search``'s arguments for this method (as its graph fragment passes them), for
        images of side ``size``."""
        raise NotImplementedError

    def resample(self, maps, size: int):
        """The ``(N, h, w)`` maps at the resolution the search reads: bilinearly resized to the output size
        (``align_corners=False``; Fong & Vedaldi upsample NormGrad of an inner layer to the image)."""
        import torch.nn.functional as F

        if tuple(maps.shape[-2:]) == (size, size):
            return maps
        return F.interpolate(maps[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]

    def eager_search(self, maps, draws: dict, size: int):
        """The graph's search on the training side: ``(B, K, 4)`` int32 boxes of ``maps`` on their device."""
        import torch

        searched = draws[self.search_draws] if self.search_draws else torch.zeros((len(maps), 2), dtype=torch.int32)
        return eager_box_search(maps, searched, draws["map_index"], **self.search_kwargs(draws, size))

    def occlude(self, images, maps, usable, draws: dict, sources=None) -> tuple:
        """Search and apply on one copy, on the images' device: ``images`` (B, 3, S, S) clean normalised rows,
        ``maps`` (B, h, w) float32 at :meth:`resample`'s resolution, ``usable`` (B,) bool (False: the row's map
        carries no saliency, the row stays whole), ``draws`` the copy's host draws by InputSpec name (torch
        tensors). Returns the occluded images, the ``(B, K, 4)`` int32 boxes, the within-copy partner (-1: none)
        and ``lam``, the share of each row's own pixels (float64)."""
        import torch  # the training side only: the reader workers unpickle the methods and never import torch

        from kernels.apply import box_mask, lam_from_mask, occlude

        boxes = self.eager_search(maps, draws, images.shape[-1])
        boxes = torch.where(usable[:, None, None], boxes, torch.full_like(boxes, -1))
        mask = box_mask(boxes, *images.shape[-2:])
        if self.paste_partner is None:
            partner = torch.full((len(images),), -1, dtype=torch.int32, device=images.device)
            lam = torch.ones(len(images), dtype=torch.float64, device=images.device)  # erased rows keep their label
            return self.cover(images, mask, sources), boxes, partner, lam
        partner = torch.as_tensor(draws[self.paste_partner], dtype=torch.int32).to(images.device)
        partner = torch.where((boxes[:, :, 0] >= 0).any(dim=1), partner, -1).to(torch.int32)
        pasted = mask & (partner >= 0)[:, None, None]
        return occlude(images, pasted, partner=partner), boxes, partner, lam_from_mask(pasted)

    def cover(self, images, mask, sources):
        """The rows of a method without a paste partner with ``mask`` occluded: erased with ``fill``
        (:class:`~pipelines.methods.base.Erasing`)."""
        from kernels.apply import occlude

        return occlude(images, mask, fill=self.fill_value)
