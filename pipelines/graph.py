"""The DALI graph: decode + crop, resize, then per copy normalise + occlude in one operator.

One code path for both devices: ``device="gpu"`` decodes with nvJPEG (``"mixed"``) and runs every
later op on the GPU, ``device="cpu"`` runs the same ops on the CPU. All parameters come from the
reader (:mod:`pipelines.reader`) as CPU inputs, which DALI accepts as argument inputs of GPU ops.

* ``copy_mode="joint"`` (and any single copy): ROI decode of the crop window
  (``decoders.image_slice``: libjpeg-turbo / nvJPEG decode only what the crop needs), resize to the
  output size, then each copy normalises and occludes its own boxes.
* ``copy_mode="batch_aug"``: decode the whole image once, then each copy resizes its own window
  (``fn.resize`` with ``roi_start`` / ``roi_end``: crop and resize fused) and flips on its own.

Every method ends in ``fn.occlusion.normalize_occlude`` (:func:`dali_ops.mixing.normalize_occlude`):
``crop_mirror_normalize``'s flip + mean/std arithmetic, bit for bit, fused with erasing the row's boxes
(``fill``; ``"mean"`` is an exact 0, as in the Cutout and Hide-and-Seek reference codes, which multiply
by a mask after ``Normalize``) or pasting the partner row's normalised pixels (``partner_index``) --
each output value written once, instead of normalising and then copying the float batch again.

* ``none``: normalise only. ``cutout`` / ``hide_and_seek``: the host-drawn boxes erased.
* ``cutmix``: the host-drawn boxes pasted from the partner row (a row index into the same batch: the
  partner's own crop and flip, no ``permute_batch`` copy).
* ``saliencymix``: ``fn.occlusion.fine_grained_saliency`` (the C++/CUDA plugin) of each row's uint8
  image as the row sees it (``mirror=`` the row's flip, done inside the op),
  ``mixing.saliency_peak_box`` on the source image's map (``map_index``; ``elem``: the partner;
  ``batch``: the first permuted image, for every row) with the host-drawn cut, then the paste.
  (The official code hands OpenCV the mean/std-normalised float tensor; we give the operator the uint8
  image the row is made of -- the photo the saliency is meant to describe, and what the op takes.)
* ``saliency_occlusion``: the row's own saliency, ``mixing.max_window`` (S = ``size``, T = ``stride``,
  host-drawn jitter), erased with the fill.
* ``keep_cutout`` / ``keep_paste``: the row's own saliency, ``mixing.keep_box`` (selective-cut /
  selective-paste candidates drawn on the host), then erase; for ``keep_paste`` the ``auto_augment``
  policy (default RandAugment, ``nvidia.dali.auto_aug.rand_augment``, n=2, m=9) on the flipped uint8
  image and the kept region pasted back from the un-augmented one (``mixing.paste_boxes``, KeepAugment's
  selective-paste), then normalised.

``auto_augment`` (any other method) runs the policy on the uint8 crop before the method, so CutMix or
Cutout combine with RandAugment / AutoAugment as in the timm recipes.

Boxes searched in the graph come out as extra outputs (one ``(1, 4)`` per row and copy); rows not
occluded get -1 from the search itself (``map_index`` -1), so no extra masking op runs.
"""
from __future__ import annotations

from nvidia.dali import fn, pipeline_def, types

from dali_ops import mixing

from pipelines.params import SALIENCY_METHODS
from pipelines.reader import META_OUTPUTS, ImageSource, per_copy_inputs

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def fill_values(fill) -> list[float]:
    """Per-channel fill in normalised units: ``"mean"`` -> 0, or a pixel value (scalar or RGB) in [0, 255]."""
    if isinstance(fill, str):
        if fill != "mean":
            raise ValueError(f"fill must be 'mean' or a pixel value in [0, 255] (scalar or 3 values), got {fill!r}")
        return [0.0, 0.0, 0.0]
    values = [float(fill)] * 3 if isinstance(fill, (int, float)) else [float(v) for v in fill]
    if len(values) != 3 or not all(0.0 <= v <= 255.0 for v in values):
        raise ValueError(f"fill must be 'mean' or a pixel value in [0, 255] (scalar or 3 values), got {fill!r}")
    return [(v / 255.0 - m) / s for v, m, s in zip(values, IMAGENET_MEAN, IMAGENET_STD)]


def build_pipeline(source: ImageSource, *, device: str, batch_size: int, num_threads: int,
                   py_workers: int, dtype: str = "float32", fill="mean", prefetch: int = 2,
                   seed: int = 0):
    """Build the pipeline of ``source``; outputs are the meta outputs, one image per copy, then (for the
    saliency-guided methods) one searched-boxes output per copy."""
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu' here, got {device!r}")
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    cfg = source.cfg
    size = cfg.output_size
    fill_value = fill_values(fill)
    decoder = "mixed" if device == "gpu" else "cpu"
    names = source.output_names()
    inputs = per_copy_inputs(cfg)
    method = cfg.method if inputs else "none"
    searched = method in SALIENCY_METHODS
    # keep_paste augments inside its copy (it pastes the un-augmented region back); the rest before
    augment = cfg.train and cfg.auto_augment is not None and method != "keep_paste"
    import dali_ops

    dali_ops.load()  # fn.occlusion: normalize_occlude for every method, saliency and search ops

    @pipeline_def(batch_size=batch_size, num_threads=num_threads,
                  device_id=0 if device == "gpu" else None, seed=seed,
                  prefetch_queue_depth=prefetch, py_num_workers=py_workers, py_start_method="spawn",
                  exec_dynamic=True, enable_conditionals=cfg.auto_augment is not None)
    def pipe():
        nodes = dict(zip(names, fn.external_source(
            source=source, num_outputs=len(names), batch=True, batch_info=True, parallel=True,
            prefetch_queue_depth=prefetch)))
        shared_crop = "crop_anchor/1" not in nodes
        if shared_crop:
            base = fn.decoders.image_slice(nodes["encoded"], nodes["crop_anchor/0"], nodes["crop_shape/0"],
                                           axis_names="HW", normalized_anchor=False,
                                           normalized_shape=False, device=decoder, output_type=types.RGB)
            base = fn.resize(base, size=(size, size), interp_type=types.INTERP_LINEAR, antialias=True)
        else:
            full = fn.decoders.image(nodes["encoded"], device=decoder, output_type=types.RGB)
        images, boxes_out = [], []
        shared = {}  # joint copies: one saliency map (and flipped crop) for all copies
        for c in range(cfg.copies):
            mirror = nodes["mirror/0" if shared_crop else f"mirror/{c}"]
            if shared_crop:
                if c == 0 and augment:
                    base = _auto_augment(base, cfg.auto_augment)  # joint copies share it, as the crop
                u8 = base
            else:
                anchor, shape = nodes[f"crop_anchor/{c}"], nodes[f"crop_shape/{c}"]
                u8 = fn.resize(full, size=(size, size), roi_start=fn.cast(anchor, dtype=types.FLOAT),
                               roi_end=fn.cast(anchor + shape, dtype=types.FLOAT),
                               interp_type=types.INTERP_LINEAR, antialias=True)
                if augment:
                    u8 = _auto_augment(u8, cfg.auto_augment)
            norm = dict(mirror=mirror, dtype=dtype, device=device)
            if searched:
                img, boxes = _searched_copy(cfg, method, u8, mirror, nodes, c, device, fill_value, dtype,
                                            shared if shared_crop else {})
                boxes_out.append(boxes)
            elif method in ("cutout", "hide_and_seek"):
                img = _normalize(u8, _on(nodes[f"erase_boxes/{c}"], device), fill=fill_value, **norm)
            elif method == "cutmix":
                img = _normalize(u8, _on(nodes[f"paste_boxes/{c}"], device), _on(nodes[f"src/{c}"], device),
                                 **norm)
            elif shared_crop and c > 0:
                img = images[0]  # copies without occlusion: one normalisation
            else:
                img = _normalize(u8, **norm)
            images.append(img)
        return (*[nodes[name] for name in OUTPUT_NAMES], *images, *boxes_out)

    return pipe()


def _on(node, device):
    """A CPU input node moved to ``device``."""
    return node.gpu() if device == "gpu" else node


def _searched_copy(cfg, method, u8, mirror, nodes, c, device, fill_value, dtype, cache):
    """One copy of a saliency-guided method: (normalised CHW image, (1, 4) boxes, -1 if not applied).

    ``cache`` holds the nodes copies can share (joint copies: the same image and flip)."""
    if "sal" not in cache:
        # the saliency of the image as the row sees it (mirrored inside the op: no flipped copy)
        cache["sal"] = fn.occlusion.fine_grained_saliency(u8, mirror=mirror)
    sal = cache["sal"]
    map_index = nodes[f"sal_source/{c}"]  # CPU: the map each row searches, -1 = row not occluded
    if method == "saliencymix":
        boxes = mixing.saliency_peak_box(sal, _on(nodes[f"cut/{c}"], device), map_index, device=device)
    elif method == "saliency_occlusion":
        boxes = mixing.max_window(sal, cfg.size, cfg.stride, _on(nodes[f"jitter/{c}"], device), map_index,
                                  device=device)
    else:
        boxes = mixing.keep_box(sal, _on(nodes[f"tries/{c}"], device), map_index, size=cfg.size,
                                tau=cfg.keep_tau, selective="cut" if method == "keep_cutout" else "paste",
                                device=device)
    if method == "keep_paste":
        if "flipped" not in cache:
            cache["flipped"] = fn.flip(u8, horizontal=mirror)  # the frame the boxes were searched in
        flipped = cache["flipped"]
        augmented = _auto_augment(flipped, cfg.auto_augment)
        u8_out = mixing.paste_boxes(augmented, boxes, flipped, device=device)
        return _normalize(u8_out, mirror=0, dtype=dtype, device=device), boxes
    if method == "saliencymix":
        return _normalize(u8, boxes, _on(nodes[f"src/{c}"], device), mirror=mirror, dtype=dtype,
                          device=device), boxes
    return _normalize(u8, boxes, mirror=mirror, fill=fill_value, dtype=dtype, device=device), boxes


def _auto_augment(u8, policy):
    """DALI's RandAugment (n=2, m=9, the KeepAugment / timm ImageNet setting) or AutoAugment (ImageNet
    policy) on uint8 HWC images."""
    if policy == "rand_augment":
        from nvidia.dali.auto_aug import rand_augment

        return rand_augment.rand_augment(u8, n=2, m=9)
    from nvidia.dali.auto_aug import auto_augment

    return auto_augment.auto_augment(u8, policy_name="image_net")


def _normalize(u8, boxes=None, partner_index=None, *, mirror, dtype, device, fill=0.0):
    """ImageNet mean/std normalisation to CHW (``crop_mirror_normalize``'s arithmetic) fused with the
    occlusion of ``boxes``: :func:`dali_ops.mixing.normalize_occlude`."""
    return mixing.normalize_occlude(u8, boxes, partner_index, mirror=mirror, mean=[m * 255 for m in IMAGENET_MEAN],
                                    std=[s * 255 for s in IMAGENET_STD], fill=fill, dtype=dtype, device=device)


OUTPUT_NAMES = META_OUTPUTS[1:]
