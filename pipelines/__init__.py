"""Whole pipelines, one sub-package per stage of a batch (imports run one way, top to bottom):

* :mod:`pipelines.tools` -- pictures of batches and the occlusion-robustness sweep;
* :mod:`pipelines.loader` -- the loader skeleton: dataset, reader (source), per-batch plan, DALI graph, the
  batch it yields, its runtime, seeding, worker lifecycle, errors, and the training side it hands the loop;
* :mod:`pipelines.methods` -- one module per paper: options, draws, graph fragment, training-side step;
* :mod:`pipelines.saliency` -- where a search's map comes from: the sources (image, model, bank), the model's
  extractors and the saliency bank;
* :mod:`pipelines.data` -- image files, their verification, the built-in demo data.

What users import is re-exported here, lazily, so ``python -m pipelines.data.verify`` and
``python -m pipelines.data.demo_data`` do not pay for importing DALI and torch.
"""
import importlib

_EXPORTS = {
    "OcclusionLoader": "pipelines.loader", "Batch": "pipelines.loader", "Runtime": "pipelines.loader",
    "TrainingSide": "pipelines.loader",
    "SaliencySource": "pipelines.saliency", "ImageSaliency": "pipelines.saliency",
    "ModelSaliency": "pipelines.saliency", "BankSaliency": "pipelines.saliency", "SaliencyBank": "pipelines.saliency",
    "NormGrad": "pipelines.saliency", "InputGradient": "pipelines.saliency", "EarlyHead": "pipelines.saliency",
    "Attention": "pipelines.saliency", "SaliencyTap": "pipelines.saliency", "SaliencyStep": "pipelines.saliency",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
