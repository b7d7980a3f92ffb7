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


def eager_box_search(maps: np.ndarray, draws: np.ndarray, map_index: np.ndarray, **kwargs) -> np.ndarray:
    """``fn.occlusion.box_search`` (the graph's CPU search operator) called eagerly on ``(B, H, W)`` float32
    maps, the per-row draws and map indices; ``kwargs`` as the operator's (``method``, ``size``, ...; a
    per-row ``size`` array becomes an argument input). Returns ``(B, 1, 4)`` int32 boxes."""
    dali_ops.load()  # before dynamic mode's first import: it lists the operators once, then ndd.occlusion is missing
    import nvidia.dali.experimental.dynamic as ndd

    def batch(a):
        return ndd.as_batch([np.ascontiguousarray(x) for x in a])

    kwargs = {k: batch(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    out = ndd.occlusion.box_search(batch(np.asarray(maps, np.float32)), batch(draws),
                                   batch(np.asarray(map_index, np.int32)), **kwargs)
    return np.asarray(ndd.as_tensor(out)).astype(np.int32).reshape(len(maps), 1, 4)


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
    def search_kwargs(self, draws: dict) -> dict:
        """``fn.occlusion.box_search``'s arguments for this method (as its graph fragment passes them)."""
        raise NotImplementedError

    def eager_search(self, maps, draws: dict):
        """The graph's search on the training side: ``(B, 1, 4)`` int32 boxes (a CPU tensor) of ``maps``."""
        import torch

        return torch.from_numpy(eager_box_search(maps.cpu().numpy(), draws[self.search_draws], draws["map_index"],
                                                 **self.search_kwargs(draws)))

    def occlude(self, images, maps, draws: dict, sources=None) -> tuple:
        """Search and apply on one copy: ``images`` (B, 3, S, S) clean normalised rows, ``maps`` (B, S, S)
        float32, ``draws`` the copy's host draws by InputSpec name (NumPy). Returns the occluded images,
        ``(B, 1, 4)`` int32 boxes and the within-copy partner (-1: none), both on the images' device."""
        import torch  # the training side only: the reader workers unpickle the methods and never import torch

        from kernels.apply import box_mask, occlude

        boxes = self.eager_search(maps, draws).to(images.device)
        mask = box_mask(boxes, *images.shape[-2:])
        if self.paste_partner is None:
            partner = torch.full((len(images),), -1, dtype=torch.int32, device=images.device)
            return occlude(images, mask, fill=self.fill_value), boxes, partner
        partner = torch.as_tensor(np.asarray(draws[self.paste_partner], np.int32), device=images.device)
        partner = torch.where(boxes[:, 0, 0] >= 0, partner, -1).to(torch.int32)
        return occlude(images, mask, partner=partner), boxes, partner
