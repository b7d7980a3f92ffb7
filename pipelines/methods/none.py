"""``none``: random-resized-crop + flip + normalisation only (the baseline every method is measured against)."""
from __future__ import annotations

from dataclasses import dataclass

from pipelines.methods.base import Method


@dataclass(frozen=True)
class NoAugment(Method):
    """No occlusion: the graph only crops, flips and normalises."""

    name = "none"
