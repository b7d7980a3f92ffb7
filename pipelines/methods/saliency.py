"""The saliency source shared by the saliency-guided methods (SaliencyMix, Fong & Vedaldi's saliency
occlusion, KeepAugment, KeepCutMix).

``saliency="image"``: OpenCV contrib's static fine-grained saliency (Montabone & Soto 2010, the map of
SaliencyMix's official code) of the row's uint8 crop as the row sees it, computed in the graph by
``fn.occlusion.fine_grained_saliency`` (bit-exact with OpenCV). Joint copies share one map. SaliencyMix's
``saliency_input="official"`` takes OpenCV's map of the row's normalised float image instead, the official
code's call.

``saliency="model"``: the map comes from the model being trained (:mod:`pipelines.feedback`: NormGrad,
input gradients, early head, attention; Fong & Vedaldi 2019, arXiv 1910.10651; KeepAugment, arXiv
2011.11778). The graph then only normalises the rows and hands the method's host draws (map index, jitter,
candidate centres, cut sides, partners) over in ``meta["draw.<name>"]``; the training side calls
``loader.occlude(batch, maps)``, which runs :meth:`SaliencyGuided.occlude`: the *same* search operator
as the graph (``fn.occlusion.box_search``, called eagerly through DALI's dynamic mode
``nvidia.dali.experimental.dynamic``) on the same draws, then the graph's erase / paste rule in torch on
the batch's device.

``saliency="bank"``: the model's map of the sample's previous visit, kept by the loader's saliency bank
(:mod:`pipelines.bank`; pushed with ``loader.feedback(batch, maps)``), re-cropped by the reader to the
row's window and flip and searched in the graph by the same operators as the image saliency; rows the
bank has no map for fall back to the image saliency (or noise, ``SaliencyBank(fallback="uniform")``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from kernels.boxes import cutmix_side
from pipelines.bank import SaliencyBank
from pipelines.methods.base import Method, check_choice

SALIENCY_SOURCES = ("image", "model", "bank")


def eager_box_search(maps: np.ndarray, draws: np.ndarray, map_index: np.ndarray, **kwargs) -> np.ndarray:
    """``fn.occlusion.box_search`` (the graph's CPU search operator) called eagerly on ``(B, H, W)`` float32
    maps, the per-row draws and map indices; ``kwargs`` as the operator's (``method``, ``size``, ...; a
    per-row ``size`` array becomes an argument input). Returns ``(B, 1, 4)`` int32 boxes."""
    import dali_ops

    dali_ops.load()  # before dynamic mode's first import: it lists the operators once, then ndd.occlusion is missing
    import nvidia.dali.experimental.dynamic as ndd

    def batch(a):
        return ndd.as_batch([np.ascontiguousarray(x) for x in a])

    kwargs = {k: batch(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    out = ndd.occlusion.box_search(batch(np.asarray(maps, np.float32)), batch(draws),
                                   batch(np.asarray(map_index, np.int32)), **kwargs)
    return np.asarray(ndd.as_tensor(out)).astype(np.int32).reshape(len(maps), 1, 4)


def erase_rows(images: torch.Tensor, boxes: np.ndarray, fill) -> torch.Tensor:
    """The graph's erase rule (``normalize_occlude`` with boxes): each row's boxes, clipped to the image,
    take the per-channel ``fill`` (normalised units); everything else is untouched."""
    out = images.clone()
    h, w = images.shape[-2:]
    value = torch.as_tensor(fill, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    for r, row in enumerate(np.asarray(boxes)):
        for y0, x0, y1, x1 in row:
            if y0 >= 0:
                out[r, :, max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)] = value
    return out


def paste_rows(images: torch.Tensor, boxes: np.ndarray, partner: np.ndarray) -> torch.Tensor:
    """The graph's paste rule (``normalize_occlude`` with a partner index): inside row r's boxes the pixels
    of row ``partner[r]`` as it was before any paste (the partner's own crop and flip), elsewhere row r."""
    out = images.clone()
    h, w = images.shape[-2:]
    for r, row in enumerate(np.asarray(boxes)):
        p = int(partner[r])
        if p < 0:
            continue
        for y0, x0, y1, x1 in row:
            if y0 >= 0:
                ys, xs = slice(max(y0, 0), min(y1, h)), slice(max(x0, 0), min(x1, w))
                out[r, :, ys, xs] = images[p, :, ys, xs]
    return out


def partner_and_cutmix_side(method: Method, rng, rows: int, size: int):
    """The CutMix draws a CutMix-sized saliency method shares (SaliencyMix, KeepCutMix): a partner
    permutation of the copy's rows, then ``lam ~ Beta(alpha, alpha)`` (one per batch with
    ``mode="batch"``) turned into the box side ``int(size * sqrt(1 - lam))`` per row."""
    perm = rng.permutation(rows).astype(np.int32)
    lam = rng.beta(method.alpha, method.alpha, size=1 if method.per_batch() else rows)
    return perm, np.broadcast_to(cutmix_side(size, lam), (rows,)).astype(np.int32)


@dataclass(frozen=True)
class SaliencyGuided(Method):
    """A method whose boxes are searched on a saliency map: in the graph (``saliency="image"`` or ``"bank"``,
    ``searched = True``) or on the training side with the model's map (``saliency="model"``).

    ``bank`` (``saliency="bank"`` only): the saliency bank, a :class:`pipelines.bank.SaliencyBank` (file,
    grid, fallback) or just its file's path; ``None``: a temporary file, one process only. The loader
    opens it and starts it empty unless ``load_state_dict`` restores it."""

    searched = True

    saliency: str = "image"
    bank: SaliencyBank | None = None

    def check(self):
        check_choice("saliency", self.saliency, SALIENCY_SOURCES)
        if self.bank is not None:
            if self.saliency != "bank":
                raise ValueError(f"bank is the file of saliency='bank'; {self.name} has saliency={self.saliency!r}")
            if not isinstance(self.bank, SaliencyBank):
                object.__setattr__(self, "bank", SaliencyBank(self.bank))

    @property
    def deferred(self) -> bool:
        return self.saliency == "model"

    @property
    def reads_bank(self) -> bool:
        return self.saliency == "bank"

    # -- training side (saliency="model") -------------------------------------------------------
    def search_kwargs(self, draws: dict) -> dict:
        """``fn.occlusion.box_search``'s arguments for this method (as its graph fragment passes them)."""
        raise NotImplementedError

    #: the InputSpec names of the search's draws input and of the paste partner (None: erase)
    search_draws: ClassVar[str] = ""
    paste_partner: ClassVar[str | None] = None

    def occlude(self, images: torch.Tensor, maps: np.ndarray, draws: dict, sources=None) -> tuple:
        """Search and apply on one copy: ``images`` (B, 3, S, S) clean normalised rows, ``maps`` (B, S, S)
        float32, ``draws`` the copy's host draws by InputSpec name. Returns the occluded images,
        ``(B, 1, 4)`` boxes and the within-copy partner (-1: none)."""
        boxes = eager_box_search(maps, draws[self.search_draws], draws["map_index"], **self.search_kwargs(draws))
        if self.paste_partner is None:
            return erase_rows(images, boxes, self.fill_value), boxes, np.full(len(images), -1, np.int32)
        partner = np.asarray(draws[self.paste_partner], np.int32)
        partner = np.where(boxes[:, 0, 0] >= 0, partner, -1).astype(np.int32)
        return paste_rows(images, boxes, partner), boxes, partner
