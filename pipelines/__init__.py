"""Whole pipelines: our reader, the DALI train/val graph and the PyTorch-facing loader."""
from pipelines.loader import Batch, OcclusionLoader

__all__ = ["Batch", "OcclusionLoader"]
