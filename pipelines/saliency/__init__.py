"""Where a search's map comes from: the sources (:mod:`~pipelines.saliency.sources`, the contract in
:mod:`~pipelines.saliency.base`), the model's extractors (:mod:`~pipelines.saliency.extractors`), the training
step that uses them in the same step (:mod:`~pipelines.saliency.step`) and the saliency bank
(:mod:`~pipelines.saliency.bank`, its writing side :mod:`~pipelines.saliency.bank_writer`).

The names below are exported lazily: the reader workers import the sources (they unpickle them with the
method) and must not pay for torch, which the extractors and the bank's writing side need.
"""
import importlib

_EXPORTS = {
    "SaliencySource": "base", "Channel": "base", "CropInfo": "base", "SlotSpec": "base", "SourceRead": "base",
    "ImageSaliency": "sources", "ModelSaliency": "sources", "saliency_source": "sources",
    "BankSaliency": "bank", "SaliencyBank": "bank",
    "NormGrad": "extractors", "InputGradient": "extractors", "EarlyHead": "extractors", "Attention": "extractors",
    "SaliencyTap": "extractors", "parse_saliency": "extractors",
    "SaliencyStep": "step",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"pipelines.saliency.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'pipelines.saliency' has no attribute {name!r}")
