"""The graph's named outputs of one iteration as a :class:`~pipelines.loader.batch.Batch`.

Rows are copy-major: row ``c * B + i`` is copy ``c`` of sample ``i`` of the batch (Fong & Vedaldi's M copies
of a batch, concatenated on the device). ``lam`` is the plan's, or for boxes the graph searched the exact kept
area of those boxes; the soft targets follow from ``(labels, partner labels, lam)`` by the training side's one
rule (:meth:`pipelines.loader.training_side.TrainingSide.targets`). Rows whose map comes from the training side
leave the graph clean, with their draws in ``meta["draw.<name>"]`` (and KeepAugment's un-augmented rows in
``meta["source_images"]``) for ``loader.occlude``.
"""
from __future__ import annotations

import collections

import numpy as np
import torch
from nvidia.dali import types
from nvidia.dali.plugin.pytorch import feed_ndarray

from kernels.areas import lam_from_boxes
from pipelines.loader.batch import Batch
from pipelines.loader.graph import Output
from pipelines.loader.source import unpack_meta


class BatchAssembler:
    """Turns one ``pipeline.run()`` into a :class:`Batch` on the loader's device."""

    def __init__(self, names: list[Output], copies: int, size: int, targets, device: torch.device | None):
        self.names, self.copies, self.size, self.targets, self.device = names, copies, size, targets, device
        # GPU outputs of DALI kept alive until the copies out of them are done (see concat_images)
        self.in_flight = collections.deque()

    def __call__(self, outputs) -> Batch:
        out = collections.defaultdict(dict)
        for name, value in zip(self.names, outputs):
            out[name.field][(name.copy, name.spec)] = value
        m = self.copies
        meta_np = unpack_meta(np.array(out["meta"][(0, None)].as_tensor()), m)
        b = meta_np["label"].shape[0]

        def rows(a):  # (B, M, ...) -> (M*B, ...) copy-major
            return np.ascontiguousarray(np.swapaxes(a, 0, 1).reshape((m * b,) + a.shape[2:]))

        def per_copy(field):
            return [out[field][(c, None)] for c in range(m)]

        lam, partner = rows(meta_np["lam"]), rows(meta_np["partner"])
        if out["boxes"]:  # boxes searched in the graph, (B, 1, 4) per copy, and the exact kept area they leave
            meta_np["boxes"] = np.stack([_host(o) for o in per_copy("boxes")], axis=1).astype(np.int32)
            lam = lam_from_boxes(rows(meta_np["boxes"]), self.size, self.size, partner).astype(np.float32)
        if out["draw"]:  # the rows leave the graph clean: no partner until loader.occlude (draw.partner has it)
            partner = np.full_like(partner, -1)
        copy = np.repeat(np.arange(m), b)
        partner_row = np.where(partner >= 0, partner + copy * b, -1)  # within-copy row -> batch row
        labels = np.tile(meta_np["label"].reshape(b), m)
        meta = {"sample_id": np.tile(meta_np["sample_id"].reshape(b), m), "copy": copy,
                "partner": partner_row, "lam": lam, "boxes": rows(meta_np["boxes"]),
                "crop": rows(meta_np["crop"]), "flip": rows(meta_np["flip"]),
                "valid": np.tile(meta_np["valid"].reshape(b), m),
                "image_size": np.tile(meta_np["image_size"], (m, 1)), "position": np.tile(meta_np["position"], (m, 1)),
                "map_source": rows(meta_np["map_source"]), "map_age": rows(meta_np["map_age"])}
        for (c, spec), node in sorted(out["draw"].items(), key=lambda kv: kv[0][0]):  # (M*B, ...) copy-major
            meta.setdefault("draw." + spec.name, []).append(_host(node).astype(spec.dtype))
        meta = {k: torch.from_numpy(np.ascontiguousarray(np.concatenate(v) if isinstance(v, list) else v))
                for k, v in meta.items()}
        if out["source"]:  # the un-augmented rows (KeepAugment's selective-paste source)
            meta["source_images"] = concat_images(per_copy("source"), self.device, self.in_flight)
        labels_t = torch.from_numpy(labels)
        partner_labels = labels_t[torch.from_numpy(np.where(partner_row >= 0, partner_row, np.arange(m * b)))]
        targets = self.targets(labels_t, partner_labels, meta["lam"])
        if self.device is not None:
            targets = targets.to(self.device, non_blocking=True)
            labels_t = labels_t.to(self.device, non_blocking=True)
        return Batch(concat_images(per_copy("image"), self.device, self.in_flight), targets, labels_t, meta)


def _host(out) -> np.ndarray:
    """A DALI output (CPU or GPU TensorList) as a NumPy array."""
    if hasattr(out, "as_cpu"):  # TensorListGPU
        out = out.as_cpu()
    return np.array(out.as_tensor())


def concat_images(images, device, in_flight: collections.deque) -> torch.Tensor:
    """Concatenate the copies' (B, 3, H, W) outputs into one (M*B, 3, H, W) tensor on ``device``.

    On the CPU the dynamic executor hands each output's memory over (DLPack keeps it alive), so a
    single copy costs no copy at all and M copies cost one concatenation. On the GPU the copies are
    issued on torch's current stream without a host synchronisation; DALI may reuse an output's memory
    once it is released, so the outputs stay referenced in ``in_flight`` until an event recorded after
    the copies has completed (checked without blocking at the next batch).
    """
    if device is None:
        parts = [torch.from_dlpack(tl.as_tensor()) for tl in images]
        return parts[0] if len(parts) == 1 else torch.cat(parts)
    while in_flight and in_flight[0][0].query():
        in_flight.popleft()
    first = images[0].as_tensor()
    shape = first.shape()
    b = shape[0]
    dtype = {types.FLOAT: torch.float32, types.FLOAT16: torch.float16}[first.dtype]
    out = torch.empty((len(images) * b, *shape[1:]), dtype=dtype, device=device)
    stream = torch.cuda.current_stream(device)
    for c, tl in enumerate(images):
        feed_ndarray(tl.as_tensor(), out[c * b:(c + 1) * b], cuda_stream=stream)
    done = torch.cuda.Event()
    done.record(stream)
    in_flight.append((done, images))
    return out
