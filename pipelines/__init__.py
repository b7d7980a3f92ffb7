"""Whole pipelines: our reader, the DALI train/val graph and the PyTorch-facing loader.

``OcclusionLoader`` and ``Batch`` are imported lazily, so ``python -m pipelines.verify`` and
``python -m pipelines.demo_data`` do not pay for importing DALI and torch.
"""
__all__ = ["Batch", "OcclusionLoader"]


def __getattr__(name):
    if name in __all__:
        from pipelines import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
