"""The saliency source shared by the saliency-guided methods (SaliencyMix, Fong & Vedaldi's saliency
occlusion, KeepAugment, KeepCutMix).

``saliency="image"``: OpenCV contrib's static fine-grained saliency (Montabone & Soto 2010, the map of
SaliencyMix's official code) of the row's uint8 crop as the row sees it, computed in the graph by
``fn.occlusion.fine_grained_saliency`` (bit-exact with OpenCV). Joint copies share one map.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipelines.methods.base import Method, check_choice

SALIENCY_SOURCES = ("image",)


@dataclass(frozen=True)
class SaliencyGuided(Method):
    """A method whose boxes are searched in the graph on a saliency map (``searched = True``)."""

    searched = True

    saliency: str = "image"

    def check(self):
        check_choice("saliency", self.saliency, SALIENCY_SOURCES)
