"""Whole pipelines: our reader, the DALI train/val graph, the method registry and the PyTorch-facing loader.

``OcclusionLoader`` and ``Batch`` are imported lazily, so ``python -m pipelines.verify`` and
``python -m pipelines.demo_data`` do not pay for importing DALI and torch.
"""
__all__ = ["Batch", "OcclusionLoader", "Runtime", "SaliencyBank"]


def __getattr__(name):
    if name == "Batch":
        from pipelines.batch import Batch

        return Batch
    if name == "OcclusionLoader":
        from pipelines.loader import OcclusionLoader

        return OcclusionLoader
    if name == "Runtime":
        from pipelines.runtime import Runtime

        return Runtime
    if name == "SaliencyBank":
        from pipelines.bank import SaliencyBank

        return SaliencyBank
    raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
