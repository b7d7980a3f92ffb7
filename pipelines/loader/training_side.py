"""The training side of a loader: what the training loop holds, as timm's loop holds ``mixup_fn``.

* :meth:`TrainingSide.targets` -- the one rule from ``(y, y_partner, lam)`` to soft targets (timm's smoothing),
  used for every batch the graph makes and every batch the training side changes;
* :meth:`TrainingSide.occlude` -- a method whose map comes from the model being trained
  (``saliency="model"``) searches and applies it here, on the model's maps of this very batch;
* :meth:`TrainingSide.feedback` -- the model's maps of a batch go back to the method's saliency source (the
  saliency bank), which steers the sample's next visit;
* :meth:`TrainingSide.step` -- a method that needs a model of its own (Attentive CutMix's frozen extractor)
  mixes the batch here, before the loader yields it.

``loader.training_side()`` returns it; ``loader.occlude`` and ``loader.feedback`` forward to it.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from kernels.apply import box_mask, lam_from_mask
from kernels.labels import soft_targets
from pipelines.loader.batch import Batch


class TrainingSide:
    """The training-side hooks of one loader (see the module docstring). ``cfg`` is the loader's
    :class:`~pipelines.loader.plan.AugmentConfig`; ``channel`` the method's saliency source's
    :class:`~pipelines.saliency.base.Channel` (the bank's), or None."""

    def __init__(self, cfg, num_classes: int, label_smoothing: float, channel=None):
        self.cfg, self.method = cfg, cfg.method
        self.num_classes, self.label_smoothing, self.channel = int(num_classes), float(label_smoothing), channel

    @property
    def takes_maps(self) -> bool:
        """The method's map comes from the model on the training side (:meth:`occlude` applies it)."""
        source = self.method.source
        return self.cfg.train and source is not None and not source.in_graph

    def map_rows(self, n: int) -> int:
        """How many of a batch's ``n`` rows need a map: with joint copies the first copy's ``B`` (the copies share
        the crop and flip, so one map per sample serves every copy, as the graph's shared saliency does), else
        every row (``copy_mode="batch_aug"``: each copy has its own crop)."""
        return n // self.cfg.copies if self.cfg.copy_mode == "joint" else n

    def targets(self, labels: torch.Tensor, partner_labels: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """Soft targets ``lam * onehot(y) + (1 - lam) * onehot(y_partner)``, smoothed as timm
        (:func:`kernels.labels.soft_targets`), on the labels' device."""
        return soft_targets(labels, partner_labels, lam.to(labels.device), self.num_classes, self.label_smoothing)

    def step(self, batch: Batch) -> Batch:
        """The method's own training-side step (Attentive CutMix), or the batch unchanged."""
        if self.method.train_step is None or not self.cfg.train:
            return batch
        return self.method.train_step(batch, self.targets)

    def occlude(self, batch: Batch, maps: torch.Tensor) -> Batch:
        """Apply the method to ``batch`` on the training side with the model's saliency ``maps`` of this very
        batch (a loader whose method has ``saliency="model"``, e.g. ``method="saliency_occlusion",
        saliency="model"``; maps from :mod:`pipelines.saliency.extractors`).

        ``maps``: ``(M*B, h, w)`` (one per row) or, with ``copy_mode="joint"``, ``(B, h, w)`` (the copies
        share the crop and flip, so one map per sample serves every copy, as the graph's shared image
        saliency does). Maps of any ``h, w`` are bilinearly resized to the output size first (Fong &
        Vedaldi). The search is the graph's own operator (``fn.occlusion.box_search``, eagerly through DALI's
        dynamic mode, on the CPU) with the draws the graph would have used (``meta["draw.*"]``); erase /
        paste follow ``normalize_occlude``'s rule on the images' device (:mod:`kernels.apply`; KeepAugment's
        selective-paste pastes from ``meta["source_images"]``, the un-augmented rows: compute its maps on
        those). Returns a new :class:`Batch` with the images, ``meta`` ``boxes`` / ``lam`` / ``partner`` and the
        soft targets filled in."""
        if not self.takes_maps:
            raise ValueError(f"occlude needs a training loader whose method takes the model's saliency "
                             f"(saliency='model'); this loader's method is {self.method}")
        m, s = self.cfg.copies, self.cfg.output_size
        n = batch.images.shape[0]
        b = n // m
        if not isinstance(maps, torch.Tensor) or maps.ndim != 3 or maps.shape[0] not in (n, self.map_rows(n)):
            raise ValueError(f"maps must be a (N, h, w) tensor with N = {n} rows"
                             + (f" (or {b}, one per sample of the joint copies)" if self.map_rows(n) != n else
                                " (copy_mode='batch_aug' copies have their own crops: one map per row)")
                             + f", got {getattr(maps, 'shape', type(maps))}")
        if maps.shape[0] != n:
            maps = maps.repeat(m, 1, 1)
        maps = maps.detach().float()
        if tuple(maps.shape[-2:]) != (s, s):
            maps = F.interpolate(maps[:, None], size=(s, s), mode="bilinear", align_corners=False)[:, 0]
        names = [spec.name for spec in self.method.inputs]
        images, boxes, partner = [], [], []
        for c in range(m):
            rows = slice(c * b, (c + 1) * b)
            draws = {k: batch.meta["draw." + k][rows].numpy() for k in names}
            sources = batch.meta["source_images"][rows] if "source_images" in batch.meta else None
            img, bx, pr = self.method.occlude(batch.images[rows], maps[rows], draws, sources)
            images.append(img)
            boxes.append(bx)
            partner.append(torch.where(pr >= 0, pr + c * b, -1))
        boxes, partner = torch.cat(boxes), torch.cat(partner)
        # lam: the share of the row's own pixels, counted on the mask that was pasted (erased rows keep theirs)
        lam = lam_from_mask(box_mask(boxes, s, s) & (partner >= 0)[:, None, None]).to(torch.float32)
        labels = batch.labels
        partner_labels = labels[torch.where(partner >= 0, partner, torch.arange(n, device=partner.device))
                                .to(labels.device)]
        targets = self.targets(labels, partner_labels, lam).to(batch.targets.device)
        return batch.replace(images=torch.cat(images) if m > 1 else images[0], targets=targets,
                             meta={"boxes": boxes.cpu(), "lam": lam.cpu(),
                                   "partner": partner.cpu().to(batch.meta["partner"].dtype)})

    def feedback(self, batch: Batch, maps: torch.Tensor, rows=None) -> None:
        """Push the model's saliency of ``batch`` into the method's saliency source (a loader whose method has
        ``saliency="bank"``): the map of each row steers the search of the sample's next visit (next epoch),
        re-cropped to that visit's window and flip (:mod:`pipelines.saliency.bank`).

        ``maps``: ``(N, h, w)``, any device and size, one per row of ``rows`` (batch row indices or a boolean
        mask; default: every row, or with joint copies ``B`` maps for the first copy's rows, whose crop and
        flip the copies share). Pad rows (``valid`` 0) are skipped. Returns at once: the maps are reduced to
        the bank's grid on their device, and the copy to the host and the file write run in a background
        thread. With ``num_shards > 1`` under ``torch.distributed`` every rank must call it once per batch
        (each push is one exchange among the ranks: every map goes to the rank that serves its sample next)."""
        if self.channel is None:
            raise ValueError(f"feedback needs a training loader whose method reads the saliency bank "
                             f"(saliency='bank'); this loader's method is {self.method}")
        n = batch.images.shape[0]
        m = self.cfg.copies
        if not isinstance(maps, torch.Tensor) or maps.ndim != 3:
            raise ValueError(f"maps must be a (N, h, w) tensor, got {getattr(maps, 'shape', type(maps))}")
        if rows is None:
            if maps.shape[0] not in (n, self.map_rows(n)):
                raise ValueError(f"maps has {maps.shape[0]} rows; give one per batch row ({n})"
                                 + (f", one per sample ({n // m}, joint copies)" if self.map_rows(n) != n else "")
                                 + " or the rows= they belong to")
            rows = np.arange(maps.shape[0])
        else:
            rows = np.asarray(rows.cpu() if isinstance(rows, torch.Tensor) else rows)
            if rows.dtype == bool:
                if rows.shape != (n,):
                    raise ValueError(f"rows as a mask must have one entry per batch row ({n}), got {rows.shape}")
                rows = np.flatnonzero(rows)
            if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer) or (rows.size and not
                                                                                0 <= rows.min() <= rows.max() < n):
                raise ValueError(f"rows must be batch row indices in [0, {n}) or a boolean mask, got {rows!r}")
            if rows.size != maps.shape[0]:
                raise ValueError(f"maps has {maps.shape[0]} rows but rows= names {rows.size}")
        keep = np.flatnonzero(batch.meta["valid"].numpy()[rows] > 0)
        self.channel.push(batch.meta, torch.as_tensor(rows[keep]), maps.detach()[torch.as_tensor(keep, device=maps.device)])
