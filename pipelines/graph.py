"""The DALI graph: decode + crop, resize, flip, normalise, then per copy occlusion.

One code path for both devices: ``device="gpu"`` decodes with nvJPEG (``"mixed"``) and runs every
later op on the GPU, ``device="cpu"`` runs the same ops on the CPU. All parameters come from the
reader (:mod:`pipelines.reader`) as CPU inputs, which DALI accepts as argument inputs of GPU ops.

* ``copy_mode="joint"`` (and any single copy): ROI decode of the crop window
  (``decoders.image_slice``: libjpeg-turbo / nvJPEG decode only what the crop needs), resize to the
  output size, one normalise, then each copy erases its own boxes.
* ``copy_mode="batch_aug"``: decode the whole image once, then each copy resizes its own window
  (``fn.resize`` with ``roi_start`` / ``roi_end``: crop and resize fused) and flips on its own.

Occlusion is applied after mean/std normalisation, so ``fill="mean"`` is an exact 0, as in the
Cutout and Hide-and-Seek reference codes (mask multiply after ``Normalize``).
"""
from __future__ import annotations

from nvidia.dali import fn, pipeline_def, types

from pipelines.reader import META_OUTPUTS, ImageSource

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
    """Build the pipeline of ``source``; outputs are the meta outputs then one image per copy."""
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be 'cpu' or 'gpu' here, got {device!r}")
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    cfg = source.cfg
    size = cfg.output_size
    fill_value = fill_values(fill)
    out_type = types.FLOAT if dtype == "float32" else types.FLOAT16
    decoder = "mixed" if device == "gpu" else "cpu"
    names = source.output_names()

    @pipeline_def(batch_size=batch_size, num_threads=num_threads,
                  device_id=0 if device == "gpu" else None, seed=seed,
                  prefetch_queue_depth=prefetch, py_num_workers=py_workers, py_start_method="spawn",
                  exec_dynamic=True)
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
            base = _normalize(base, nodes["mirror/0"], out_type)
        else:
            full = fn.decoders.image(nodes["encoded"], device=decoder, output_type=types.RGB)
        images = []
        for c in range(cfg.copies):
            if shared_crop:
                img = base
            else:
                anchor, shape = nodes[f"crop_anchor/{c}"], nodes[f"crop_shape/{c}"]
                img = fn.resize(full, size=(size, size), roi_start=fn.cast(anchor, dtype=types.FLOAT),
                                roi_end=fn.cast(anchor + shape, dtype=types.FLOAT),
                                interp_type=types.INTERP_LINEAR, antialias=True)
                img = _normalize(img, nodes[f"mirror/{c}"], out_type)
            if cfg.method != "none":
                img = fn.erase(img, anchor=nodes[f"erase_anchor/{c}"], shape=nodes[f"erase_shape/{c}"],
                               axis_names="HW", fill_value=fill_value)
            images.append(img)
        return (*[nodes[name] for name in OUTPUT_NAMES], *images)

    return pipe()


def _normalize(img, mirror, out_type):
    return fn.crop_mirror_normalize(img, dtype=out_type, output_layout="CHW", mirror=mirror,
                                    mean=[m * 255 for m in IMAGENET_MEAN],
                                    std=[s * 255 for s in IMAGENET_STD])


OUTPUT_NAMES = META_OUTPUTS[1:]
