"""The loader skeleton: :class:`OcclusionLoader` and what it is built from (dataset, source, plan, graph,
outputs, batch, runtime, seeding, lifecycle, errors) and the :class:`TrainingSide` it hands the training loop.

Exported lazily: the reader workers import :mod:`pipelines.loader.source` (they unpickle it) and must not pay
for the loader's torch and DALI-iterator imports."""
import importlib

_EXPORTS = {"Batch": "batch", "OcclusionLoader": "loader", "Runtime": "runtime", "TrainingSide": "training_side"}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"pipelines.loader.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'pipelines.loader' has no attribute {name!r}")
