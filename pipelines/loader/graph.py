"""The DALI graph: decode + crop, resize, flip, then per copy the method's fragment, ending in one fused
normalise + occlude operator.

One code path for both devices: ``device="gpu"`` decodes with nvJPEG (``"mixed"``) and runs every later op
on the GPU of ``device_id``, ``device="cpu"`` runs the same ops on the CPU. Every parameter comes from the
reader (:mod:`pipelines.loader.source`) as CPU inputs, which DALI accepts as argument inputs of GPU ops; the
reader's :meth:`~pipelines.loader.source.ImageSource.layout` says what each output is.

* ``copy_mode="joint"`` (and any single copy): ROI decode of the crop window (``decoders.image_slice``:
  libjpeg-turbo / nvJPEG decode only what the crop needs), resize to the output size; the copies share
  the crop, the flip and any saliency map.
* ``copy_mode="batch_aug"``: decode the whole image once, then each copy resizes its own window
  (``fn.resize`` with ``roi_start`` / ``roi_end``: crop and resize fused) and flips on its own.

The method's fragment (:meth:`pipelines.methods.base.Method.graph`) gets the uint8 crop and the context
below; every fragment ends in ``fn.occlusion.normalize_occlude`` (:func:`dali_ops.mixing.normalize_occlude`):
``crop_mirror_normalize``'s flip + mean/std arithmetic, bit for bit, fused with erasing the row's boxes,
pasting or blending the partner row's normalised pixels -- each output value written once.

``auto_augment`` runs the policy (DALI's ``auto_aug``, :mod:`pipelines.loader.policy`) on the flipped uint8 crop
(timm's order: crop, flip, policy), before the fragment (:meth:`~pipelines.methods.base.Method.prepare`); the
fragment then sees ``mirror`` 0.

ColorJitter + Lighting (:mod:`kernels.color`), when the config has them, is the crop's ``color`` input of
``normalize_occlude``: every normalisation of the crop (and a partner's pixels pasted into another row, with the
partner's own) applies it, after the policy and before the occlusion, as clovaai's ``ToTensor, jittering,
lighting, normalize`` runs before CutMix.

The pipeline is built with DALI's checkpointing on (``enable_checkpointing=True``): every operator of the graph is
checkpointable (the plugin's are DALI ``StatelessOperator``s, the reader is a ``BatchInfo`` callback), so the
loader can save and restore the state of DALI's own random operators (the policies'); see
:mod:`pipelines.loader.seeding`.

The graph's outputs are named (:class:`Output`): the packed meta, per copy its image, and per the copy's
fragment its searched boxes, or its draws and source image when its map comes from the training side.
"""
from __future__ import annotations

from typing import NamedTuple

from nvidia.dali import fn, pipeline_def, types

import dali_ops
from dali_ops import mixing
from pipelines.loader.source import ImageSource, Slot
from pipelines.methods.base import IMAGENET_MEAN, IMAGENET_STD


class Output(NamedTuple):
    """The name of one pipeline output: ``field`` (``"meta"``, ``"image"``, ``"boxes"``, ``"draw"`` or
    ``"source"``), the copy it belongs to and, for a draw, its :class:`~pipelines.methods.InputSpec`."""

    field: str
    copy: int = 0
    spec: object = None


class GraphContext:
    """What a method's graph fragment builds on: the device, the output ``size``, the fused normalisation, the
    policy, and what the copies of one crop share (the clean image, the augmented crop, the saliency map)."""

    def __init__(self, device: str, dtype: str, policy, source, size: int):
        self.device = device
        self.size = size
        self.dtype = dtype
        self.policy = policy  # a pipelines.loader.policy.Policy, or None
        self.source = source  # the method's saliency source (None: the method searches no map)
        self.mean = [m * 255 for m in IMAGENET_MEAN]
        self.std = [s * 255 for s in IMAGENET_STD]
        self.new_crop({})

    def new_crop(self, nodes: dict, color=None) -> None:
        """Start a crop: nothing shared yet; ``nodes`` its saliency source's reader arrays by name, ``color`` its
        colour transform (a CPU node of 21 floats per row, :mod:`kernels.color`; None: none)."""
        self.shared: dict = {}
        self.crop_nodes = nodes
        self.color = color

    def on(self, node):
        """A CPU input node moved to the graph's device."""
        return node.gpu() if self.device == "gpu" else node

    def normalize(self, u8, boxes=None, partner=None, blend=None, *, mirror, fill=0.0, fill_mode="const",
                  noise_seed=None):
        """ImageNet mean/std normalisation to CHW (after the crop's colour transform, if any) fused with erasing
        ``boxes`` (with ``fill``, per channel in normalised units, or Random Erasing's noise: ``fill_mode``,
        ``noise_seed``), or pasting (and with ``blend``, blending) the ``partner`` row's pixels:
        :func:`dali_ops.mixing.normalize_occlude`."""
        return mixing.normalize_occlude(u8, boxes, partner, blend, mirror=mirror, mean=self.mean, std=self.std,
                                        fill=fill, fill_mode=fill_mode, noise_seed=noise_seed, color=self.color,
                                        dtype=self.dtype, device=self.device)

    def clean(self, u8, mirror):
        """The crop normalised with nothing applied, once per crop (joint copies share it)."""
        if "clean" not in self.shared:
            self.shared["clean"] = self.normalize(u8, mirror=mirror)
        return self.shared["clean"]

    def saliency(self, u8, mirror):
        """The map the crop's search reads, from the method's source (one per crop, shared by joint copies);
        None when the source's map is not in the graph (the model's: the training side searches)."""
        if not self.source.in_graph:
            return None
        if "saliency" not in self.shared:
            self.shared["saliency"] = self.source.graph_map(self, u8, mirror, self.crop_nodes)
        return self.shared["saliency"]

    def augment(self, u8):
        """The policy on uint8 HWC images (:meth:`pipelines.loader.policy.Policy.apply`). Once per crop: joint
        copies share their pre-processing (Fong & Vedaldi) and differ only by the method's draws."""
        if "augmented" not in self.shared:
            self.shared["augmented"] = self.policy.apply(u8, self.size)
        return self.shared["augmented"]


def build_pipeline(source: ImageSource, *, device: str, device_id: int | None, batch_size: int,
                   num_threads: int, py_workers: int, reader_depth: int, dtype: str = "float32", prefetch: int = 2,
                   seed: int = 0, checkpoint=None):
    """The pipeline of ``source`` and the :class:`Output` name of each of its outputs, in order; ``checkpoint``
    (``pipe.checkpoint()`` of the same graph) restores DALI's state into it when it is built.

    ``reader_depth`` is the reader's own queue (batches its ``py_workers`` prepare ahead), apart from the graph's
    ``prefetch``: a batch-mode parallel ``external_source`` keeps at most its ``prefetch_queue_depth`` batches in
    flight, so with the graph's depth there (2) at most two workers were ever busy, whatever ``py_workers`` said."""
    cfg = source.cfg
    method = cfg.method
    size = cfg.output_size
    decoder = "mixed" if device == "gpu" else "cpu"
    layout = source.layout()
    policy = cfg.policy if cfg.train else None
    dali_ops.load()  # fn.occlusion: normalize_occlude for every method, saliency and search ops
    names: list[Output] = []

    @pipeline_def(batch_size=batch_size, num_threads=num_threads,
                  device_id=device_id if device == "gpu" else None, seed=seed,
                  prefetch_queue_depth=prefetch, py_num_workers=py_workers, py_start_method="spawn",
                  exec_dynamic=True, enable_conditionals=policy is not None, enable_checkpointing=True)
    def pipe():
        nodes = dict(zip(layout, fn.external_source(
            source=source, num_outputs=len(layout), batch=True, batch_info=True, parallel=True,
            prefetch_queue_depth=reader_depth)))
        shared_crop = Slot("crop_anchor", 1) not in nodes
        if shared_crop:
            base = fn.decoders.image_slice(nodes[Slot("encoded")], nodes[Slot("crop_anchor", 0)],
                                           nodes[Slot("crop_shape", 0)], axis_names="HW", normalized_anchor=False,
                                           normalized_shape=False, device=decoder, output_type=types.RGB)
            base = fn.resize(base, size=(size, size), interp_type=types.INTERP_LINEAR, antialias=True)
        else:
            full = fn.decoders.image(nodes[Slot("encoded")], device=decoder, output_type=types.RGB)
        g = GraphContext(device, dtype, policy, method.source, size)
        outputs = {Output("meta"): nodes[Slot("meta")]}
        for c in range(cfg.copies):
            mirror = nodes[Slot("mirror", 0 if shared_crop else c)]
            if c == 0 or not shared_crop:  # a new crop
                g.new_crop({slot.spec.name: node for slot, node in nodes.items()
                            if slot.kind == "saliency" and slot.copy == c}, nodes.get(Slot("color", c)))
                if not shared_crop:
                    anchor, shape = nodes[Slot("crop_anchor", c)], nodes[Slot("crop_shape", c)]
                    base = fn.resize(full, size=(size, size), roi_start=fn.cast(anchor, dtype=types.FLOAT),
                                     roi_end=fn.cast(anchor + shape, dtype=types.FLOAT),
                                     interp_type=types.INTERP_LINEAR, antialias=True)
                if policy is not None:
                    base = fn.flip(base, horizontal=mirror)  # timm's order: flip, then the policy
            if policy is not None:
                mirror = 0
            specs = {slot.spec: node for slot, node in nodes.items() if slot.kind == "input" and slot.copy == c}
            if not cfg.train:  # validation: the clean crop
                outputs[Output("image", c)] = g.clean(base, mirror)
                continue
            part = method.graph(g, method.prepare(g, base), mirror, specs)
            outputs[Output("image", c)] = part.image
            if part.boxes is not None:
                outputs[Output("boxes", c)] = part.boxes
            for spec, node in (part.draws or {}).items():
                outputs[Output("draw", c, spec)] = node
            if part.source is not None:
                outputs[Output("source", c)] = part.source
        names.extend(outputs)
        return tuple(outputs.values())

    return pipe(checkpoint=checkpoint), names
