"""The loader skeleton: :class:`OcclusionLoader` and what it is built from (dataset, source, plan, graph,
outputs, batch, runtime, seeding, lifecycle, errors) and the :class:`TrainingSide` it hands the training loop."""
from pipelines.loader.batch import Batch
from pipelines.loader.loader import OcclusionLoader
from pipelines.loader.runtime import Runtime
from pipelines.loader.training_side import TrainingSide

__all__ = ["Batch", "OcclusionLoader", "Runtime", "TrainingSide"]
