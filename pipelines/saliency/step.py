"""A training step with the model's saliency of this very batch (docs/model_saliency.md, the same-step path):
the maps from an extractor (:mod:`pipelines.saliency.extractors`), the method applied on the training side
(``loader.occlude``), one optimizer step."""
from __future__ import annotations

import torch

from kernels.labels import soft_cross_entropy
from pipelines.saliency.extractors import EarlyHead, NormGrad, SaliencyTap


class SaliencyStep:
    """One training step with the model's saliency of this very batch (docs/model_saliency.md):
    ``step = SaliencyStep(model, optimizer, loader, NormGrad(model, "layer1.0.conv1", target="loss"))``, then
    ``loss, batch = step(batch)`` per batch of a loader whose method has ``saliency="model"``.

    * Free joint step (``free=True``, the default when it applies: ``copies=2, copy_mode="joint",
      p_keep_image=(1.0, 0.0)`` and a :class:`NormGrad` with ``target="loss"``): Fong & Vedaldi's joint
      training (arXiv 1910.10651). Forward and backward the clean copy first (its loss weighted by its
      share of the 2B valid rows, so its gradient is exactly its part of the joint batch's gradient), read
      NormGrad at ``saliency.layer`` from that very backward (a tensor hook on the activation: no extra
      pass), ``loader.occlude`` the second copy with it, forward and backward that copy, one optimizer
      step. Without BatchNorm the update equals one step on the 2B batch; with BatchNorm each half is
      normalised with its own B-row statistics (the one difference).
    * Fresh path (any other extractor, or ``free=False``): the maps come from an extra forward/backward of
      the extractor on the clean rows (joint copies: the first copy's rows, shared by the copies), then
      ``loader.occlude`` and a plain step on the whole batch. An :class:`EarlyHead` adds its
      :meth:`~EarlyHead.aux_loss` with weight ``aux_weight`` (KeepAugment's 0.3); give its parameters to
      the optimizer.

    ``prepare``: images -> what the model takes (device, memory format). ``valid`` rows of ``meta`` weight
    the loss (pad rows count zero)."""

    def __init__(self, model, optimizer, loader, saliency, *, free: bool | None = None, aux_weight: float = 0.3,
                 prepare=None):
        cfg = loader.cfg
        if not loader.training_side().takes_maps:
            raise ValueError(f"loader: SaliencyStep needs a training loader whose method has saliency='model', "
                             f"got {cfg.method}")
        joint_clean = cfg.copies == 2 and cfg.copy_mode == "joint" and cfg.p_keep_image == (1.0, 0.0)
        can_free = joint_clean and isinstance(saliency, NormGrad) and saliency.target == "loss"
        if free is None:
            free = can_free
        if free and not can_free:
            raise ValueError("free=True needs copies=2, copy_mode='joint', p_keep_image=(1.0, 0.0) and "
                             "saliency=NormGrad(model, layer, target='loss')")
        self.model, self.optimizer, self.loader, self.saliency = model, optimizer, loader, saliency
        self.free = bool(free)
        # the free step reads NormGrad off its own backward, as the bank's feed does
        self._tap = SaliencyTap(model, "normgrad", saliency.layer) if self.free else None
        self.aux_weight = float(aux_weight)
        self.prepare = prepare or (lambda x: x)

    def __call__(self, batch):
        device = next(self.model.parameters()).device
        valid = batch.meta["valid"].to(device, torch.float32)
        denom = valid.sum().clamp_min(1.0)
        self.optimizer.zero_grad(set_to_none=True)
        if self.free:
            return self._free(batch, valid, denom)
        rows = self.loader.training_side().map_rows(batch.images.shape[0])
        # the rows the map describes: the un-augmented ones where the method keeps them (selective-paste)
        clean = self.prepare(batch.meta.get("source_images", batch.images)[:rows])
        maps = self.saliency(clean, batch.labels[:rows].to(clean.device))
        batch = self.loader.occlude(batch, maps)
        images = self.prepare(batch.images)
        loss = soft_cross_entropy(self.model(images), batch.targets.to(device), valid, denom)
        if isinstance(self.saliency, EarlyHead):
            loss = loss + self.aux_weight * self.saliency.aux_loss(images, batch.labels.to(device),
                                                                   batch.targets.to(device))
        loss.backward()
        self.optimizer.step()
        return loss.detach(), batch

    def _free(self, batch, valid, denom):
        device = valid.device
        b = batch.images.shape[0] // 2
        logits = self.model(self._tap.watch(self.prepare(batch.images[:b])))
        loss0 = soft_cross_entropy(logits, batch.targets[:b].to(device), valid[:b], denom)
        loss0.backward()  # the gradient of the training loss at the layer: this backward's
        del logits
        batch = self.loader.occlude(batch, self._tap.maps())
        loss1 = soft_cross_entropy(self.model(self.prepare(batch.images[b:])), batch.targets[b:].to(device), valid[b:],
                           denom)
        loss1.backward()
        self.optimizer.step()
        return (loss0 + loss1).detach(), batch
