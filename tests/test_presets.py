"""``train_example.py --preset NAME``: each preset's resolved arguments against the values its paper (or, where the
paper defers to it, its reference code) writes down, section or table cited per value; ``--preset list`` lists them;
flags after a preset override it; timm's flag names resolve to the methods they name.

The expected values below are written from the papers, not read from ``train_example.PRESETS``."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train_example as te

REPO = Path(__file__).resolve().parents[1]

# CutMix (arXiv 1905.04899) section 4.1.1: "300 epochs ... initial learning rate 0.1, decayed by factor 0.1 at
# epochs 75, 150, and 225 ... batch size 256 ... alpha 1"; clovaai/CutMix-PyTorch README (ImageNet command:
# --cutmix_prob 1.0) and train.py (one lam and box per batch; SGD(model.parameters(), momentum 0.9, weight_decay
# 1e-4, nesterov=True); ColorJitter(0.4, 0.4, 0.4) + Lighting(0.1); no warm-up, no label smoothing).
CLOVAAI = dict(arch="resnet50", epochs=300, schedule="step", milestones=(75, 150, 225), gamma=0.1, global_batch=256,
               base_lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True, wd_all=True, warmup_epochs=0.0,
               color={"jitter": 0.4, "lighting": 0.1}, label_smoothing=0.0)
EXPECTED = {
    "cutmix_resnet50": dict(CLOVAAI, method="cutmix", method_options=dict(alpha=1.0, p=1.0, mode="batch")),
    # SaliencyMix (arXiv 2006.01791) ImageNet: CutMix's setting (300 epochs, x0.1 at 75/150/225, batch 256, beta 1);
    # the official SaliencyMix-ImageNet/train.py is clovaai's loop: one box per batch from
    # saliency_bbox(input[rand_index[0]]) of the normalised float image.
    "saliencymix_resnet50": dict(CLOVAAI, method="saliencymix",
                                 method_options=dict(alpha=1.0, p=1.0, mode="batch", saliency_input="official")),
    # KeepAugment (arXiv 2011.11778) Table 6: KeepCutMix against CutMix's 78.6 in CutMix's setting; tau = 0.6 and
    # the model's input-gradient saliency (section 3).
    "keepcutmix_resnet50": dict(CLOVAAI, method="keep_cutmix", method_options=dict(alpha=1.0, p=1.0, tau=0.6),
                                saliency="input_grad"),
    # KeepAugment's ImageNet KeepAutoAugment: AutoAugment's ImageNet policy and ResNet-50 schedule (Cubuk et al.
    # 2019, arXiv 1805.09501: 270 epochs, x0.1 at 90 / 180 / 240), tau 0.6, input-gradient saliency.
    "keepautoaugment_resnet50": dict(arch="resnet50", epochs=270, schedule="step", milestones=(90, 180, 240),
                                     gamma=0.1, method="keep_paste",
                                     method_options=dict(policy="auto_augment", tau=0.6, p=1.0), saliency="input_grad",
                                     global_batch=256),
    # Fong & Vedaldi (arXiv 1910.10651): S = 56, T = 1, tau = 16 (section 3); joint training, one clean and one
    # occluded copy (Figure 1); NormGrad saliency (Eq. 1); 100 epochs x0.1 at 30 / 60 / 90, batch 256.
    "fong_vedaldi_normgrad": dict(arch="resnet50", epochs=100, schedule="step", milestones=(30, 60, 90), gamma=0.1,
                                  global_batch=256, base_lr=0.1, method="saliency_occlusion",
                                  method_options=dict(size=56, stride=1, jitter=16), copies=2, copy_mode="joint",
                                  p_keep_image=(1.0, 0.0), saliency_kind="normgrad"),
    # Attentive CutMix (arXiv 2003.13048) section 2: a pretrained ResNet-50's final 7 x 7 feature map, the top 6
    # cells kept; compared with CutMix in CutMix's setting.
    "attentive_cutmix_resnet50": dict(CLOVAAI, method="attentive_cutmix",
                                      method_options=dict(arch="resnet50", top_k=6, input_size=224, p=1.0)),
    # ResNet strikes back (arXiv 2110.00476) Table 1, procedure A1: RandAugment 7 / 0.5 (timm's rand-m7-mstd0.5-inc1),
    # Mixup alpha 0.2, CutMix alpha 1.0 (timm's switch 0.5, prob 1.0, batch mode), no random erasing, no label
    # smoothing, 600 epochs, cosine, 5 warm-up epochs.
    "timm_a1_augmentation": dict(arch="resnet50", epochs=600, schedule="cosine", warmup_epochs=5.0,
                                 auto_augment="rand-m7-mstd0.5-inc1", label_smoothing=0.0, method="cutmix_mixup",
                                 method_options=dict(mixup_alpha=0.2, cutmix_alpha=1.0, switch_prob=0.5, p=1.0,
                                                     mode="batch")),
}


@pytest.fixture(scope="module")
def extractor(tmp_path_factory):
    """A local ResNet-50 checkpoint for attentive_cutmix's frozen extractor (random weights: only its shape counts)."""
    import torchvision

    path = tmp_path_factory.mktemp("extractor") / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    return path


def test_every_preset_is_checked():
    assert set(EXPECTED) == set(te.PRESETS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_resolves_to_the_papers_values(name, extractor, tmp_path):
    extra = ["--extractor", str(extractor)] if name == "attentive_cutmix_resnet50" else []
    args = te.parse_args(["--preset", name, "--data", str(tmp_path), *extra])
    want = dict(EXPECTED[name])
    method, options = want.pop("method"), want.pop("method_options")
    assert args.method.name == method
    for key, value in options.items():
        assert getattr(args.method, key) == value, (name, key)
    if "global_batch" in want:  # per-process batch times the preset's world size
        assert args.batch_size * te.PRESETS[name]["processes"] == want.pop("global_batch")
    if "saliency_kind" in want:
        assert args.saliency.partition(":")[0] == want.pop("saliency_kind")
    for key, value in want.items():
        assert getattr(args, key) == value, (name, key, getattr(args, key))
    meta = te.PRESETS[name]
    assert meta["arxiv"] in ("1910.10651", "1905.04899", "2006.01791", "2011.11778", "2003.13048", "2110.00476")


def test_flags_after_a_preset_override_it(tmp_path):
    args = te.parse_args(["--preset", "cutmix_resnet50", "--data", str(tmp_path), "--epochs", "30", "--no-nesterov",
                          "--decay-every", "10"])
    assert (args.epochs, args.nesterov, args.milestones) == (30, False, (10, 20))


def test_preset_list_prints_every_preset():
    out = subprocess.run([sys.executable, "train_example.py", "--preset", "list"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for name, preset in te.PRESETS.items():
        assert name in out.stdout and preset["arxiv"] in out.stdout


def test_unknown_preset_and_clashing_methods_are_named(tmp_path):
    with pytest.raises(SystemExit, match="unknown preset"):
        te.parse_args(["--preset", "no_such", "--data", str(tmp_path)])
    with pytest.raises(SystemExit):
        te.parse_args(["--data", str(tmp_path), "--reprob", "0.25", "--mixup", "0.8"])
    with pytest.raises(SystemExit):
        te.parse_args(["--data", str(tmp_path), "--method", "cutout", "--cutmix", "1.0"])


def test_timm_flags_name_timm_methods(tmp_path):
    args = te.parse_args(["--data", str(tmp_path), "--reprob", "0.25", "--remode", "pixel", "--recount", "3"])
    assert args.method.name == "random_erasing" and (args.method.p, args.method.mode, args.method.max_count) == (
        0.25, "pixel", 3)
    only_cutmix = te.parse_args(["--data", str(tmp_path), "--cutmix", "1.0", "--smoothing", "0.1"])
    assert only_cutmix.method.name == "cutmix_mixup" and only_cutmix.method.switch_prob == 1.0
    assert only_cutmix.label_smoothing == 0.1
    assert te.parse_args(["--data", str(tmp_path), "--mixup", "0.8"]).method.switch_prob == 0.0
    assert te.parse_args(["--data", str(tmp_path)]).method.name == te.DEFAULT_METHOD


def test_step_schedule_and_optimizer_options():
    """clovaai's ``lr * 0.1 ** (epoch // 75)`` at 300 epochs; SGD with nesterov and decay on every parameter or only
    on the weights."""
    steps = 10
    for epoch in (0, 74, 75, 149, 150, 225, 299):
        got = te.lr_factor(epoch * steps, steps, 300, 0.0, "step", (75, 150, 225), 0.1)
        assert got == pytest.approx(0.1 ** (epoch // 75))
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    every = te.build_optimizer(model, 0.1, 0.9, 1e-4, nesterov=True, wd_all=True)
    assert len(every.param_groups) == 1 and every.param_groups[0]["nesterov"]
    weights = te.build_optimizer(model, 0.1, 0.9, 1e-4)
    assert [g["weight_decay"] for g in weights.param_groups] == [1e-4, 0.0]


def test_top5_counts_the_label_among_the_five_largest():
    logits = torch.tensor([[0.0, 1, 2, 3, 4, 5, 6], [6.0, 5, 4, 3, 2, 1, 0]])
    hits = te.topk_correct(logits, torch.tensor([2, 2]))
    assert hits.tolist() == [[False, True], [False, True]]
    assert te.topk_correct(logits, torch.tensor([1, 0])).tolist() == [[False, False], [True, True]]
