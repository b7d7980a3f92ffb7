"""A training step with the model's saliency of this very batch (docs/model_saliency.md, the same-step path):
the maps from an extractor (:mod:`pipelines.saliency.extractors`), the method applied on the training side
(``loader.occlude``), one optimizer step -- in one process or under ``DistributedDataParallel``, in float32 or
under AMP (bf16 autocast, or float16 with a ``GradScaler``)."""
from __future__ import annotations

import contextlib

import torch

from kernels.labels import soft_cross_entropy
from pipelines.saliency.extractors import EarlyHead, NormGrad, capture, normgrad_map, objective


class SaliencyStep:
    """One training step with the model's saliency of this very batch (docs/model_saliency.md):
    ``step = SaliencyStep(model, optimizer, loader, NormGrad(net, "maxpool", target="loss"))``, then
    ``loss, batch = step(batch)`` per batch of a loader whose method has ``saliency="model"``.

    ``model`` is what is trained: a module, or a ``DistributedDataParallel`` around one (``net``, its
    ``.module``, is what the extractor was built on). Every forward and backward of the training loss goes
    through ``model``, with **one gradient all-reduce per optimizer step**; the extractors and hooks use
    ``net`` and never reach DDP.

    * **Joint step** (``copies=2, copy_mode="joint", p_keep_image=(1.0, 0.0)`` and a :class:`NormGrad`):
      Fong & Vedaldi's joint training (arXiv 1910.10651). Forward and backward the clean copy first (its
      loss weighted by its share of the 2B valid rows, so its gradient is exactly its part of the joint
      batch's gradient; under DDP inside ``model.no_sync()``, so nothing is reduced yet), take NormGrad at
      ``saliency.layer`` from that very forward, ``loader.occlude`` the second copy with it, forward and
      backward that copy (the backward that all-reduces the accumulated gradient), one optimizer step.
      With ``target="loss"`` the layer's gradient is the clean copy's own backward's (a tensor hook): the
      **free joint step** (``free``), no pass at all for the map. With ``target="label"`` (the paper's, the
      default) the label logits' gradient is taken down to the layer from the same forward (one extra
      backward through the layers above it, no extra forward). Without BatchNorm the update equals one step on
      the 2B batch; with BatchNorm each half is normalised with its own B-row statistics (the one difference).
    * **Fresh path** (any other extractor, or ``free=False``): the maps come from an extra pass of the
      extractor on the clean rows of ``net`` (joint copies: the first copy's rows, shared by the copies), then
      ``loader.occlude`` and a plain step on the whole batch through ``model``. An :class:`EarlyHead` adds its
      :meth:`~EarlyHead.aux_loss` with weight ``aux_weight`` (KeepAugment's 0.3); its parameters must be
      trained (under DDP: made a submodule of ``net`` before wrapping it, so their gradients are reduced
      with the model's).

    ``autocast``: a context factory (``lambda: torch.autocast("cuda", torch.bfloat16)``) the forwards run in;
    ``scaler``: a ``GradScaler`` (float16), which scales every backward and the extractors' objectives (the
    maps do not depend on the scale: ``loader.occlude`` divides each by its maximum) and takes the step.
    ``prepare``: images -> what the model takes (device, memory format). ``valid`` rows of ``meta`` weight
    the loss (pad rows count zero). :attr:`unusable` counts, on the device, the valid rows whose map carried
    no saliency (left whole by ``loader.occlude``)."""

    def __init__(self, model, optimizer, loader, saliency, *, free: bool | None = None, aux_weight: float = 0.3,
                 prepare=None, autocast=None, scaler=None):
        cfg = loader.cfg
        if not loader.training_side().takes_maps:
            raise ValueError(f"loader: SaliencyStep needs a training loader whose method has saliency='model', "
                             f"got {cfg.method}")
        joint_clean = cfg.copies == 2 and cfg.copy_mode == "joint" and cfg.p_keep_image == (1.0, 0.0)
        joint = joint_clean and isinstance(saliency, NormGrad) and free is not False
        if free and not (joint and saliency.target == "loss"):
            raise ValueError("free=True needs copies=2, copy_mode='joint', p_keep_image=(1.0, 0.0) and "
                             "saliency=NormGrad(model, layer, target='loss')")
        self.model, self.optimizer, self.loader, self.saliency = model, optimizer, loader, saliency
        self.net = getattr(model, "module", model)
        self.joint = joint
        self.free = joint and saliency.target == "loss"
        self.aux_weight = float(aux_weight)
        self.prepare = prepare or (lambda x: x)
        self.autocast = autocast or contextlib.nullcontext
        self.scaler = scaler if scaler is not None and scaler.is_enabled() else None
        self.unusable = None

    def _scale(self, loss):
        return loss if self.scaler is None else self.scaler.scale(loss)

    def _finish(self, batch, valid):
        """The optimizer step (through the scaler), and the count of valid rows whose map was unusable."""
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        bad = ((batch.meta["map_ok"].to(valid.device) == 0) & (valid > 0)).sum()
        self.unusable = bad if self.unusable is None else self.unusable + bad

    def __call__(self, batch):
        device = next(self.net.parameters()).device
        valid = batch.meta["valid"].to(device, torch.float32, non_blocking=True)
        denom = valid.sum().clamp_min(1.0)
        self.optimizer.zero_grad(set_to_none=True)
        if self.joint:
            return self._joint(batch, valid, denom)
        rows = self.loader.training_side().map_rows(batch.images.shape[0])
        # the rows the map describes: the un-augmented ones where the method keeps them (selective-paste)
        clean = self.prepare(batch.meta.get("source_images", batch.images)[:rows])
        scaled = {} if self.scaler is None else {"scale": self.scaler.scale}  # any (images, labels) callable without one
        with self.autocast():
            maps = self.saliency(clean, batch.labels[:rows].to(clean.device), **scaled)
        batch = self.loader.occlude(batch, maps)
        images = self.prepare(batch.images)
        targets = batch.targets.to(device)
        with self.autocast():
            loss = soft_cross_entropy(self.model(images), targets, valid, denom)
            if isinstance(self.saliency, EarlyHead):
                loss = loss + self.aux_weight * self.saliency.aux_loss(images, batch.labels.to(device), targets)
        self._scale(loss).backward()
        self._finish(batch, valid)
        return loss.detach(), batch

    def _joint(self, batch, valid, denom):
        device = valid.device
        b = batch.images.shape[0] // 2
        grads = []
        # the first backward accumulates locally (DDP: no all-reduce); the second one reduces the sum
        sync_later = self.model.no_sync() if hasattr(self.model, "no_sync") else contextlib.nullcontext()
        with sync_later:
            with capture(self.saliency.module) as out, self.autocast():
                logits = self.model(self.prepare(batch.images[:b]))
                loss0 = soft_cross_entropy(logits, batch.targets[:b].to(device), valid[:b], denom)
            act = out[0]
            if self.free:  # the training loss's gradient at the layer, from the backward below
                act.register_hook(grads.append)
            else:  # the label logits' gradient at the layer, from this forward (Fong & Vedaldi, TorchRay)
                scale = None if self.scaler is None else self.scaler.scale
                grads += torch.autograd.grad(objective(logits, batch.labels[:b].to(device), "label", scale), act,
                                             retain_graph=True)
            self._scale(loss0).backward()
            del logits
        batch = self.loader.occlude(batch, normgrad_map(act, grads[0]))
        del act, grads
        with self.autocast():
            loss1 = soft_cross_entropy(self.model(self.prepare(batch.images[b:])), batch.targets[b:].to(device),
                                       valid[b:], denom)
        self._scale(loss1).backward()
        self._finish(batch, valid)
        return (loss0 + loss1).detach(), batch
