"""The built-in saliency sources and the ``saliency=`` shorthand of the saliency-guided methods.

* :class:`ImageSaliency` (``saliency="image"``): OpenCV contrib's static fine-grained saliency (Montabone &
  Soto 2010, the map of SaliencyMix's official code) computed in the graph by
  ``fn.occlusion.fine_grained_saliency`` (bit-exact with OpenCV), of the row's uint8 crop as the row sees it
  (``input="uint8"``) or of its mean/std-normalised float image (``input="official"``, the array
  SaliencyMix's official ``saliency_bbox`` hands OpenCV). Joint copies share one map.
* :class:`ModelSaliency` (``saliency="model"``): the map comes from the model being trained
  (:mod:`pipelines.saliency.extractors`: NormGrad, input gradients, early head, attention; Fong & Vedaldi 2019,
  arXiv 1910.10651; KeepAugment, arXiv 2011.11778). The graph leaves the rows clean and hands the method's host
  draws over in ``meta["draw.<name>"]``; ``loader.occlude(batch, maps)`` searches and applies on the training
  side with the graph's own search operator and rules.
* :class:`~pipelines.saliency.bank.BankSaliency` (``saliency="bank"``, the method's ``bank`` option its file):
  the model's map of the sample's previous visit (:mod:`pipelines.saliency.bank`).

A new source is one subclass of :class:`~pipelines.saliency.base.SaliencySource` passed as ``saliency=``.
"""
from __future__ import annotations

from dataclasses import dataclass

from nvidia.dali import fn, types

from kernels.checks import check_choice
from pipelines.saliency.bank import BankSaliency
from pipelines.saliency.base import SaliencySource

#: what :class:`ImageSaliency` computes OpenCV's map on
IMAGE_INPUTS = ("uint8", "official")


@dataclass(frozen=True)
class ImageSaliency(SaliencySource):
    """OpenCV's fine-grained saliency of the crop, in the graph. ``input="uint8"``: of the row's uint8 crop as the
    row sees it (flipped), the photo the saliency is meant to describe. ``input="official"``: of the row's
    float32 HWC image as the graph normalises it (ImageNet mean/std, after the flip; float32 whatever the
    loader's ``dtype``, as openmixup forces fp32 before numpy), which is what SaliencyMix's official code hands
    OpenCV (``img.cpu().numpy().transpose(1, 2, 0)``). OpenCV's fine-grained saliency never converts a float
    image to 8 bits: it reads the raw bytes of its float32 gray plane as the pixels' centre values
    (``gray.at<uchar>`` on a ``CV_32F`` Mat), so that map follows byte noise rather than the photo;
    ``fn.occlusion.fine_grained_saliency`` on float32 input reproduces opencv-contrib-python-headless 5.0.0 on
    x86-64 bit for bit."""

    name = "image"

    input: str = "uint8"

    def __post_init__(self):
        check_choice("input", self.input, IMAGE_INPUTS)

    def graph_map(self, g, u8, mirror, nodes):
        if self.input == "uint8":
            return fn.occlusion.fine_grained_saliency(u8, mirror=mirror)
        hwc = fn.crop_mirror_normalize(u8, mirror=mirror, mean=g.mean, std=g.std, dtype=types.FLOAT,
                                       output_layout="HWC")
        return fn.occlusion.fine_grained_saliency(hwc)


@dataclass(frozen=True)
class ModelSaliency(SaliencySource):
    """The model's own map of this very batch, given on the training side: ``loader.occlude(batch, maps)``
    (or :class:`~pipelines.saliency.step.SaliencyStep`)."""

    name = "model"
    in_graph = False


SHORTHANDS = {cls.name: cls for cls in (ImageSaliency, ModelSaliency, BankSaliency)}


def saliency_source(saliency, bank=None, owner: str = "the method") -> SaliencySource:
    """A method's (``owner``'s) ``saliency`` option as a source: a :class:`~pipelines.saliency.base.SaliencySource`,
    or the shorthand ``"image"``, ``"model"`` or ``"bank"``; ``bank`` (with ``"bank"`` only) is the bank's file
    path or a :class:`~pipelines.saliency.bank.BankSaliency`."""
    if bank is not None:
        if saliency != "bank":
            raise ValueError(f"bank is the file of saliency='bank'; {owner} has saliency={saliency!r}")
        return bank if isinstance(bank, BankSaliency) else BankSaliency(bank)
    if isinstance(saliency, SaliencySource):
        return saliency
    if not isinstance(saliency, str) or saliency not in SHORTHANDS:
        raise ValueError(f"saliency must be one of {tuple(SHORTHANDS)} or a SaliencySource, got {saliency!r}")
    return SHORTHANDS[saliency]()
