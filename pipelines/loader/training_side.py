"""The training side of a loader: what the training loop holds, as timm's loop holds ``mixup_fn``.

* :meth:`TrainingSide.targets` -- the one rule from ``(y, y_partner, lam)`` to soft targets (timm's smoothing),
  used for every batch the graph makes and every batch the training side changes;
* :meth:`TrainingSide.occlude` -- a method whose map comes from the model being trained
  (``saliency="model"``) searches and applies it here, on the model's maps of this very batch, on the batch's
  device;
* :meth:`TrainingSide.feedback` -- the model's maps of a batch go back to the method's saliency source (the
  saliency bank), which steers the sample's next visit;
* :meth:`TrainingSide.step` -- a method whose source computes its own maps on the training side (Attentive
  CutMix's frozen extractor) is applied here, before the loader yields the batch.

Maps enter through :func:`checked_maps`, one rule for ``occlude`` and ``feedback`` (docs/model_saliency.md,
"Maps: the rule at the door").

``loader.training_side()`` returns it; ``loader.occlude`` and ``loader.feedback`` forward to it.
"""
from __future__ import annotations

import numpy as np
import torch

from kernels.labels import soft_targets
from pipelines.loader.batch import Batch


def checked_maps(maps, rows: tuple, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The saliency ``maps`` a training loop hands in, checked and put on one scale, on their own device with no
    value read back to the host (so no synchronisation): returns ``(maps, usable)``.

    * Shape and type (a ``ValueError`` naming ``what``): a real ``(N, h, w)`` tensor (floating point or integer)
      with ``N`` one of ``rows`` and ``h, w >= 1``.
    * Values, per row: saliency is non-negative (a norm, an absolute gradient, the mean of post-ReLU features),
      so a negative value counts as 0 (Grad-CAM's ReLU: negative evidence is not saliency); the row is then
      divided by its maximum, so every map lies in ``[0, 1]`` with its peak at 1 (the scale of OpenCV's map,
      which SaliencyMix's uint8 peak assumes; it also removes a ``GradScaler``'s loss scale and the loss
      weighting from NormGrad). Computed in float64 for float64 maps, else float32, so no finite map overflows.
    * A row with a NaN or an infinite value, or with no positive value, carries no saliency: ``usable`` is
      False there and the row comes back as zeros. :meth:`TrainingSide.occlude` leaves such a row whole (no
      box, ``lam = 1``; ``meta["map_ok"]`` 0); :meth:`TrainingSide.feedback` pushes it as "no map", so the
      sample's next visit falls back as one never pushed does.
    """
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3:
        raise ValueError(f"{what}: maps must be a (N, h, w) tensor, got {getattr(maps, 'shape', type(maps))}")
    if maps.dtype == torch.bool or maps.is_complex():
        raise ValueError(f"{what}: maps must be real numbers (floating point or integer), got {maps.dtype}")
    if maps.shape[0] not in rows or maps.shape[1] < 1 or maps.shape[2] < 1:
        raise ValueError(f"{what}: maps must be (N, h, w) with N in {sorted(set(rows))} and h, w >= 1, got "
                         f"{tuple(maps.shape)}")
    x = maps.detach().to(torch.float64 if maps.dtype == torch.float64 else torch.float32)
    finite = torch.isfinite(x).all(dim=2).all(dim=1)
    x = torch.where(finite[:, None, None], x.clamp_min(0), torch.zeros_like(x))
    peak = x.amax(dim=(1, 2))
    usable = finite & (peak > 0)
    x = torch.where(usable[:, None, None], x / torch.where(usable, peak, torch.ones_like(peak))[:, None, None],
                    torch.zeros_like(x))
    return x.to(torch.float32), usable


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
        """A source that computes its own maps on the training side (``own_maps``: Attentive CutMix's frozen
        extractor) occludes the batch with them here; any other batch is returned unchanged."""
        source = self.method.source
        if not self.takes_maps or not source.own_maps:
            return batch
        return self.occlude(batch, source.maps(batch.images[:self.map_rows(batch.images.shape[0])]))

    def occlude(self, batch: Batch, maps: torch.Tensor) -> Batch:
        """Apply the method to ``batch`` on the training side with the model's saliency ``maps`` of this very
        batch (a loader whose method has ``saliency="model"``, e.g. ``method="saliency_occlusion",
        saliency="model"``; maps from :mod:`pipelines.saliency.extractors`).

        ``maps``: ``(M*B, h, w)`` (one per row) or, with ``copy_mode="joint"``, ``(B, h, w)`` (the copies
        share the crop and flip, so one map per sample serves every copy, as the graph's shared image
        saliency does), checked and scaled by :func:`checked_maps`. The method brings them to the resolution
        its search reads (bilinearly to the output size for a box search, as Fong & Vedaldi upsample; Attentive
        CutMix's grid reads a map of at least its grid's size as it is). The search is the graph's own operator
        (``fn.occlusion.box_search``, eagerly through DALI's dynamic mode, on the batch's device: the maps go
        to DALI by DLPack, no host copy) with the draws the graph would have used (``meta["draw.*"]``); erase /
        paste follow ``normalize_occlude``'s rule in torch (:mod:`kernels.apply`; KeepAugment's
        selective-paste pastes from ``meta["source_images"]``, the un-augmented rows: compute its maps on
        those). Nothing is read back to the host.

        Returns a new :class:`Batch` with the images, the soft targets and ``meta`` ``boxes``, ``lam``,
        ``partner`` and ``map_ok`` (1: the row's map was usable) filled in, **on the batch's device** (the
        graph's ``meta`` is on the host)."""
        if not self.takes_maps:
            raise ValueError(f"occlude needs a training loader whose method takes the model's saliency "
                             f"(saliency='model'); this loader's method is {self.method}")
        m, s = self.cfg.copies, self.cfg.output_size
        images = batch.images
        n = images.shape[0]
        b = n // m
        maps, usable = checked_maps(maps, (n, self.map_rows(n)), "occlude")
        maps, usable = maps.to(images.device), usable.to(images.device)
        maps = self.method.resample(maps, s)  # before the copies share them: one resample per sample
        if maps.shape[0] != n:
            maps, usable = maps.repeat(m, 1, 1), usable.repeat(m)
        names = [spec.name for spec in self.method.inputs]
        parts = []
        for c in range(m):
            rows = slice(c * b, (c + 1) * b)
            draws = {k: batch.meta["draw." + k][rows] for k in names}
            sources = batch.meta["source_images"][rows] if "source_images" in batch.meta else None
            img, bx, pr, lam = self.method.occlude(images[rows], maps[rows], usable[rows], draws, sources)
            parts.append((img, bx, torch.where(pr >= 0, pr + c * b, -1), lam))
        out, boxes, partner, lam = (torch.cat(p) for p in zip(*parts))
        labels = batch.labels
        own = torch.arange(n, device=partner.device)
        partner_labels = labels[torch.where(partner >= 0, partner, own).to(labels.device)]
        targets = self.targets(labels, partner_labels, lam.to(torch.float32)).to(batch.targets.device)
        return batch.replace(images=out, targets=targets,
                             meta={"boxes": boxes, "lam": lam.to(torch.float32),
                                   "partner": partner.to(batch.meta["partner"].dtype),
                                   "map_ok": usable.to(torch.int32)})

    def feedback(self, batch: Batch, maps: torch.Tensor, rows=None) -> None:
        """Push the model's saliency of ``batch`` into the method's saliency source (a loader whose method has
        ``saliency="bank"``): the map of each row steers the search of the sample's next visit (next epoch),
        re-cropped to that visit's window and flip (:mod:`pipelines.saliency.bank`).

        ``maps``: ``(N, h, w)``, any device and size, one per row of ``rows`` (batch row indices or a boolean
        mask; default: every row, or with joint copies ``B`` maps for the first copy's rows, whose crop and
        flip the copies share), checked and scaled by :func:`checked_maps` (a row whose map carries no
        saliency is pushed as "no map"). Pad rows (``valid`` 0) are skipped. Returns at once: the maps are
        reduced to the bank's grid on their device, and the copy to the host and the file write run in a
        background thread. With ``num_shards > 1`` under ``torch.distributed`` every rank must call it once
        per batch (each push is one exchange among the ranks: every map goes to the rank that serves its sample
        next)."""
        if self.channel is None:
            raise ValueError(f"feedback needs a training loader whose method reads the saliency bank "
                             f"(saliency='bank'); this loader's method is {self.method}")
        n = batch.images.shape[0]
        m = self.cfg.copies
        if rows is None:
            if not isinstance(maps, torch.Tensor) or maps.ndim != 3:
                checked_maps(maps, (n,), "feedback")  # names what is wrong
            if maps.shape[0] not in (n, self.map_rows(n)):
                raise ValueError(f"feedback: maps has {maps.shape[0]} rows; give one per batch row ({n})"
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
        maps, _ = checked_maps(maps, (rows.size,), "feedback")
        keep = np.flatnonzero(batch.meta["valid"].numpy()[rows] > 0)
        self.channel.push(batch.meta, torch.as_tensor(rows[keep]), maps[torch.as_tensor(keep, device=maps.device)])
