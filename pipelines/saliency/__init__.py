"""Where a search's map comes from: the sources (:mod:`~pipelines.saliency.sources`, the contract in
:mod:`~pipelines.saliency.base`), the model's extractors (:mod:`~pipelines.saliency.extractors`), the training
step that uses them in the same step (:mod:`~pipelines.saliency.step`) and the saliency bank
(:mod:`~pipelines.saliency.bank`)."""
from pipelines.saliency.bank import BankSaliency, SaliencyBank
from pipelines.saliency.base import Channel, CropInfo, SaliencySource, SlotSpec, SourceRead
from pipelines.saliency.extractors import Attention, EarlyHead, InputGradient, NormGrad, SaliencyTap, parse_saliency
from pipelines.saliency.sources import ImageSaliency, ModelSaliency, saliency_source
from pipelines.saliency.step import SaliencyStep

__all__ = ["SaliencySource", "ImageSaliency", "ModelSaliency", "BankSaliency", "SaliencyBank", "Channel", "CropInfo",
           "SlotSpec", "SourceRead", "saliency_source", "NormGrad", "InputGradient", "EarlyHead", "Attention",
           "SaliencyTap", "SaliencyStep", "parse_saliency"]
