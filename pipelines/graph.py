"""The DALI graph: decode + crop, resize, flip, then per copy the method's fragment, ending in one fused
normalise + occlude operator.

One code path for both devices: ``device="gpu"`` decodes with nvJPEG (``"mixed"``) and runs every later op
on the GPU of ``device_id``, ``device="cpu"`` runs the same ops on the CPU. Every parameter comes from the
reader (:mod:`pipelines.reader`) as CPU inputs, which DALI accepts as argument inputs of GPU ops; the
reader's :meth:`~pipelines.reader.ImageSource.layout` says what each output is.

* ``copy_mode="joint"`` (and any single copy): ROI decode of the crop window (``decoders.image_slice``:
  libjpeg-turbo / nvJPEG decode only what the crop needs), resize to the output size; the copies share
  the crop, the flip and any saliency map.
* ``copy_mode="batch_aug"``: decode the whole image once, then each copy resizes its own window
  (``fn.resize`` with ``roi_start`` / ``roi_end``: crop and resize fused) and flips on its own.

The method's fragment (:meth:`pipelines.methods.base.Method.graph`) gets the uint8 crop and the context
below; every fragment ends in ``fn.occlusion.normalize_occlude`` (:func:`dali_ops.mixing.normalize_occlude`):
``crop_mirror_normalize``'s flip + mean/std arithmetic, bit for bit, fused with erasing the row's boxes,
pasting or blending the partner row's normalised pixels -- each output value written once.

``auto_augment`` runs the policy (DALI's ``auto_aug``) on the flipped uint8 crop (timm's order: crop,
flip, policy), before the fragment, unless the method runs it inside its fragment (KeepAugment's
selective-paste); the flip then happens before the policy and the fragment sees ``mirror`` 0.
"""
from __future__ import annotations

from nvidia.dali import fn, pipeline_def, types

from dali_ops import mixing
from pipelines.methods.base import IMAGENET_MEAN, IMAGENET_STD
from pipelines.reader import ImageSource, Slot

class GraphContext:
    """What a method's graph fragment builds on: the device, the fused normalisation, the policy, and the
    nodes copies of one crop share (joint copies: one saliency map)."""

    def __init__(self, device: str, dtype: str, policy: str | None):
        self.device = device
        self.dtype = dtype
        self.policy = policy
        self.shared: dict = {}
        # the current crop's saliency-bank nodes ("bank_map", "bank_use"; the latter None with the "uniform"
        # fallback), None without a bank
        self.bank = None

    def on(self, node):
        """A CPU input node moved to the graph's device."""
        return node.gpu() if self.device == "gpu" else node

    def normalize(self, u8, boxes=None, partner=None, blend=None, *, mirror, fill=0.0):
        """ImageNet mean/std normalisation to CHW fused with erasing ``boxes`` (with ``fill``, per channel in
        normalised units), or pasting (and with ``blend``, blending) the ``partner`` row's pixels:
        :func:`dali_ops.mixing.normalize_occlude`."""
        return mixing.normalize_occlude(u8, boxes, partner, blend, mirror=mirror,
                                        mean=[m * 255 for m in IMAGENET_MEAN], std=[s * 255 for s in IMAGENET_STD],
                                        fill=fill, dtype=self.dtype, device=self.device)

    def saliency(self, u8, mirror):
        """The saliency map the row's search reads; one map per crop, shared by joint copies. Without a bank:
        the fine-grained saliency of the image as the row sees it (``mirror`` applied inside the op, no
        flipped copy). With a bank (:mod:`pipelines.bank`): the reader's re-cropped map (uint8, scaled to
        [0, 1]), and for the rows it has none the fallback -- with ``"image"`` the image saliency, computed
        for those rows only (the op's ``skip`` leaves zeros on the others, and the reader sends zeros for
        the fallback rows, so the sum is one or the other); with ``"uniform"`` the reader's noise."""
        if "saliency" not in self.shared:
            if self.bank is None:
                self.shared["saliency"] = fn.occlusion.fine_grained_saliency(u8, mirror=mirror)
            else:
                bank_map, use = self.bank
                prior = self.on(bank_map) * (1.0 / 255.0)  # float32: the arithmetic promotes the uint8 map
                if use is not None:  # the "image" fallback
                    prior = fn.occlusion.fine_grained_saliency(u8, mirror=mirror, skip=use) + prior
                self.shared["saliency"] = prior
        return self.shared["saliency"]

    def saliency_of_normalized(self, u8, mirror):
        """The fine-grained saliency OpenCV computes on the row's mean/std-normalised float32 HWC image, the
        array SaliencyMix's official code hands it (``saliency_bbox``: ``img.cpu().numpy().transpose(1, 2,
        0)``). The image is ``crop_mirror_normalize``'s, which :meth:`normalize` equals bit for bit: the
        pixels the row's model input is made of. One map per crop, shared by joint copies."""
        if "saliency_of_normalized" not in self.shared:
            hwc = fn.crop_mirror_normalize(u8, mirror=mirror, mean=[m * 255 for m in IMAGENET_MEAN],
                                           std=[s * 255 for s in IMAGENET_STD], dtype=types.FLOAT,
                                           output_layout="HWC")
            self.shared["saliency_of_normalized"] = fn.occlusion.fine_grained_saliency(hwc)
        return self.shared["saliency_of_normalized"]

    def augment(self, u8):
        """The policy on uint8 HWC images: DALI's RandAugment (n=2, m=9, the KeepAugment / timm ImageNet
        setting) or AutoAugment (ImageNet policy). Once per crop: joint copies share their pre-processing
        (Fong & Vedaldi) and differ only by the method's draws."""
        if "augmented" not in self.shared:
            if self.policy == "rand_augment":
                from nvidia.dali.auto_aug import rand_augment

                self.shared["augmented"] = rand_augment.rand_augment(u8, n=2, m=9)
            else:
                from nvidia.dali.auto_aug import auto_augment

                self.shared["augmented"] = auto_augment.auto_augment(u8, policy_name="image_net")
        return self.shared["augmented"]


def build_pipeline(source: ImageSource, *, device: str, device_id: int | None, batch_size: int,
                   num_threads: int, py_workers: int, dtype: str = "float32", prefetch: int = 2, seed: int = 0):
    """Build the pipeline of ``source``; outputs are the packed meta, one image per copy, then (for a method
    that searches its boxes in the graph) one boxes output per copy, or (for a method deferred to the
    training side, ``saliency="model"``) per copy its :attr:`~pipelines.methods.base.Method.inputs` in order,
    then (``source_output``) one source image per copy."""
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu' here, got {device!r}")
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    cfg = source.cfg
    method = cfg.method
    size = cfg.output_size
    decoder = "mixed" if device == "gpu" else "cpu"
    layout = source.layout()
    policy = cfg.auto_augment if cfg.train else None
    import dali_ops

    dali_ops.load()  # fn.occlusion: normalize_occlude for every method, saliency and search ops

    @pipeline_def(batch_size=batch_size, num_threads=num_threads,
                  device_id=device_id if device == "gpu" else None, seed=seed,
                  prefetch_queue_depth=prefetch, py_num_workers=py_workers, py_start_method="spawn",
                  exec_dynamic=True, enable_conditionals=policy is not None)
    def pipe():
        nodes = dict(zip(layout, fn.external_source(
            source=source, num_outputs=len(layout), batch=True, batch_info=True, parallel=True,
            prefetch_queue_depth=prefetch)))
        shared_crop = Slot("crop_anchor", 1) not in nodes
        if shared_crop:
            base = fn.decoders.image_slice(nodes[Slot("encoded")], nodes[Slot("crop_anchor", 0)],
                                           nodes[Slot("crop_shape", 0)], axis_names="HW", normalized_anchor=False,
                                           normalized_shape=False, device=decoder, output_type=types.RGB)
            base = fn.resize(base, size=(size, size), interp_type=types.INTERP_LINEAR, antialias=True)
        else:
            full = fn.decoders.image(nodes[Slot("encoded")], device=decoder, output_type=types.RGB)
        g = GraphContext(device, dtype, policy)
        images, searched, draws, sources = [], [], [], []
        for c in range(cfg.copies):
            mirror = nodes[Slot("mirror", 0 if shared_crop else c)]
            if shared_crop and c > 0:
                u8 = base
            else:
                if Slot("bank_map", c) in nodes:
                    g.bank = (nodes[Slot("bank_map", c)], nodes.get(Slot("bank_use", c)))
                if not shared_crop:
                    g.shared = {}  # each copy has its own crop: nothing to share
                    anchor, shape = nodes[Slot("crop_anchor", c)], nodes[Slot("crop_shape", c)]
                    base = fn.resize(full, size=(size, size), roi_start=fn.cast(anchor, dtype=types.FLOAT),
                                     roi_end=fn.cast(anchor + shape, dtype=types.FLOAT),
                                     interp_type=types.INTERP_LINEAR, antialias=True)
                if policy is not None:
                    base = fn.flip(base, horizontal=mirror)  # timm's order: flip, then the policy
                    if not method.policy_inside:
                        base = g.augment(base)
                u8 = base
            if policy is not None:
                mirror = 0
            specs = {slot.spec: node for slot, node in nodes.items() if slot.kind == "input" and slot.copy == c}
            if not specs:  # validation, or a method without graph inputs: normalise (once for shared copies)
                img = images[0] if shared_crop and c > 0 else g.normalize(u8, mirror=mirror)
                boxes = None
            elif method.deferred:  # the model's saliency: the training side searches and applies
                if shared_crop and c > 0 and not method.source_output:
                    img = images[0]
                else:
                    img, source_img = method.deferred_graph(g, u8, mirror)
                    if method.source_output:
                        sources.append(source_img)
                boxes = None
                draws += [specs[spec] for spec in method.inputs]  # the host draws, for loader.occlude
            else:
                img, boxes = method.graph(g, u8, mirror, specs)
            images.append(img)
            if boxes is not None:
                searched.append(boxes)
        return (nodes[Slot("meta")], *images, *searched, *draws, *sources)

    return pipe()
