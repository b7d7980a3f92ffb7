"""train_example.py end to end on the CPU: ``torchrun`` sharding and DDP, exact resume, the occlusion sweep.

Real runs (subprocesses, as a user would start them) on the small ``tiny_dataset`` at 32 px so they fit the
shared 2-core test machine; each asserts behaviour, not just that the script exits 0.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--arch", "resnet18", "--epochs", "2", "--image-size", "32", "--reader-workers", "1", "--workers", "1",
         "--device", "cpu", "--log-every", "1"]


def _run(cmd, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


def _ids_per_epoch(files):
    """{epoch: [sample ids served, in any order]} over the given rank logs."""
    out = {}
    for f in files:
        for epoch, ids in json.loads(Path(f).read_text())["ids"]:
            out.setdefault(epoch, []).extend(ids)
    return out


def test_torchrun_two_ranks_shard_every_sample_once_and_match_single_process(tiny_dataset, tmp_path):
    """2 ranks x 4 images vs 1 process x 8 images (the same global batch): every training image is served
    exactly once per epoch across the ranks, both ranks end with the same weights (DDP), and the top-1 of
    the two runs agrees within the noise of 6 validation images after 2 epochs (generous bound)."""
    n_train = 24  # tiny_dataset: 3 classes x 8; 12 per rank = 3 full batches of 4, nothing dropped
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          "train_example.py", "--data", str(tiny_dataset), "--batch-size", "4",
          "--log-ids", str(tmp_path / "ddp"), *SMALL])
    _run([sys.executable, "train_example.py", "--data", str(tiny_dataset), "--batch-size", "8",
          "--log-ids", str(tmp_path / "single"), *SMALL])
    ranks = [json.loads((tmp_path / f"ddp.rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    ddp = _ids_per_epoch([tmp_path / "ddp.rank0.json", tmp_path / "ddp.rank1.json"])
    single = _ids_per_epoch([tmp_path / "single.rank0.json"])
    assert sorted(ddp) == sorted(single) == [0, 1]
    for epoch in (0, 1):
        assert sorted(ddp[epoch]) == list(range(n_train)), f"epoch {epoch}: ranks did not split the data"
        assert sorted(single[epoch]) == list(range(n_train))
        per_rank = [set(i for e, ids in r["ids"] if e == epoch for i in ids) for r in ranks]
        assert not per_rank[0] & per_rank[1]
    assert ranks[0]["param_checksum"] == ranks[1]["param_checksum"]  # DDP kept the replicas equal
    top1_ddp, top1_single = ranks[0]["top1"], json.loads((tmp_path / "single.rank0.json").read_text())["top1"]
    assert ranks[1]["top1"] == top1_ddp  # reduced across ranks: every rank reports the same figure
    assert ranks[1]["top5"] == ranks[0]["top5"] and top1_ddp <= ranks[0]["top5"] <= 1.0  # top-5 too (3 classes: 1)
    assert 0.0 <= top1_ddp <= 1.0 and abs(top1_ddp - top1_single) <= 0.5


def test_torchrun_feedback_bank(tiny_dataset, tmp_path):
    """``--feedback bank`` under torchrun on the CPU: hooks on the normal step push NormGrad into one bank file
    the two ranks share; in epoch 1 most rows read a map from it, one epoch old, and the checkpoint's loader
    state names the bank."""
    out = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "train_example.py", "--data", str(tiny_dataset), "--batch-size", "4", "--method",
                "saliency_occlusion:size=8", "--saliency", "normgrad:layer1.0.conv1", "--feedback", "bank",
                "--save", str(tmp_path / "run"), *SMALL])
    shares = [line for line in out.splitlines() if "maps from the bank" in line]
    assert len(shares) == 2 and "maps from the bank 0% of rows" in shares[0], out
    share = float(shares[1].split("maps from the bank ")[1].split("%")[0])
    assert share >= 50 and "(mean age 1.00 epochs)" in shares[1], shares[1]
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    banks = [rank["loader"]["bank"] for rank in ckpt["ranks"]]
    assert banks[0]["path"] == banks[1]["path"] == str(tmp_path / "run" / "saliency_bank.bin")
    assert banks[0]["generation"] == banks[1]["generation"]


def test_temporary_bank_leaves_nothing_behind(tiny_dataset, tmp_path):
    """``--feedback bank`` without ``--save``: the run's temporary bank leaves nothing in the temporary folder,
    neither after a normal end nor after ``kill -9`` (no code runs) once the loaders are built."""
    import signal

    temp = tmp_path / "tmp"
    temp.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=str(temp), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "train_example.py", "--data", str(tiny_dataset), "--batch-size", "4", "--method",
           "saliency_occlusion:size=8", "--saliency", "normgrad:layer1.0.conv1", "--feedback", "bank", *SMALL]

    def banks():
        return [p for p in temp.rglob("*") if "bank" in p.name]

    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0 and "maps from the bank" in proc.stdout, proc.stderr[-3000:]
    assert banks() == []
    killed = subprocess.Popen(cmd[:-len(SMALL)] + [*SMALL, "--epochs", "50"], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in killed.stdout:  # printed once both loaders are built (the bank is open)
            if line.startswith("data "):
                break
        else:
            pytest.fail("train_example.py ended before printing its data line")
    finally:
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
    assert killed.returncode == -signal.SIGKILL and banks() == []


def test_torchrun_temporary_bank_leaves_nothing_behind(tiny_dataset, tmp_path):
    """``--feedback bank`` under torchrun without ``--save``: the ranks share a temporary bank whose folder is gone
    once every rank has it open, and epoch 1 still reads the maps pushed in epoch 0 (through each rank's open
    descriptor)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=str(temp))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "train_example.py",
           "--data", str(tiny_dataset), "--batch-size", "4", "--method", "saliency_occlusion:size=8", "--saliency",
           "normgrad:layer1.0.conv1", "--feedback", "bank", *SMALL]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shares = [line for line in proc.stdout.splitlines() if "maps from the bank" in line]
    assert len(shares) == 2 and float(shares[1].split("maps from the bank ")[1].split("%")[0]) >= 50, proc.stdout
    assert [p for p in temp.rglob("*") if "bank" in p.name] == []


@pytest.mark.parametrize("stop_after, position", [(6, (0, 6)), (8, (1, 2))], ids=["end_of_epoch", "mid_epoch"])
def test_resume_gives_bit_identical_weights(tiny_dataset, tmp_path, stop_after, position):
    """2 epochs straight vs stop after ``stop_after`` steps (6 steps per epoch: after epoch 1, or 2 steps
    into epoch 2), then ``--resume`` to the end: every tensor of the model, the optimiser momentum and
    the step count are identical (torch.equal)."""
    common = [sys.executable, "train_example.py", "--data", str(tiny_dataset), "--batch-size", "4",
              "--deterministic", *SMALL]
    _run([*common, "--save", str(tmp_path / "straight")])
    out = _run([*common, "--save", str(tmp_path / "split"), "--stop-after", str(stop_after)])
    assert f"stopped after step {stop_after}" in out
    stopped = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert stopped["step"] == stop_after
    loader = stopped["ranks"][0]["loader"]  # the next batch to serve: (epoch, batches served)
    assert (loader["epoch"], loader["batch"]) == position
    _run([*common, "--save", str(tmp_path / "split"), "--resume", str(tmp_path / "split")])
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 12
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for (ka, sa), (kb, sb) in zip(a["optimizer"]["state"].items(), b["optimizer"]["state"].items()):
        assert ka == kb and torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 12


def test_bad_arguments_name_the_argument():
    from train_example import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--demo", "--batch-size", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--occlusion-sweep", "--demo"])
    args = parse_args(["--data", "/x"])  # the ImageNet recipe
    assert (args.arch, args.batch_size, args.base_lr, args.warmup_epochs, args.epochs) == ("resnet50", 32, 0.1, 5.0, 90)
    assert parse_args(["--data", "/x", "--schedule", "step"]).epochs == 100


def test_lr_schedule_follows_the_recipe():
    """Linear warm-up to the peak, then cosine to 0 or x0.1 at epochs 30/60/90 (Fong & Vedaldi)."""
    from train_example import lr_factor

    spe = 10
    assert lr_factor(0, spe, 90, 5, "cosine") == pytest.approx(1 / 50)
    assert lr_factor(49, spe, 90, 5, "cosine") == pytest.approx(1.0)
    assert lr_factor(50, spe, 90, 5, "cosine") == pytest.approx(1.0)
    assert lr_factor(50 + 425, spe, 90, 5, "cosine") == pytest.approx(0.5)
    assert lr_factor(899, spe, 90, 5, "cosine") < 1e-3
    assert lr_factor(299, spe, 100, 5, "step") == 1.0
    assert lr_factor(300, spe, 100, 5, "step") == pytest.approx(0.1)
    assert lr_factor(650, spe, 100, 5, "step") == pytest.approx(0.01)
    assert lr_factor(950, spe, 100, 5, "step") == pytest.approx(0.001)


def test_no_weight_decay_on_batchnorm_and_bias():
    import torchvision

    from train_example import build_optimizer

    model = torchvision.models.resnet18(num_classes=3)
    opt = build_optimizer(model, 0.1, 0.9, 1e-4)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in no_decay["params"]} == {id(m.weight) for m in model.modules()
                                                   if isinstance(m, torch.nn.BatchNorm2d)} | {
        id(m.bias) for m in model.modules() if getattr(m, "bias", None) is not None}


def test_amp_float16_with_grad_scaler_checkpoints_the_scaler(tiny_dataset, tmp_path):
    """``--amp --amp-dtype float16`` trains under autocast with a GradScaler whose state is checkpointed
    (``--amp`` alone is bf16 autocast and needs no scaler); the loss read-outs stay finite."""
    out = _run([sys.executable, "train_example.py", "--data", str(tiny_dataset), "--batch-size", "8", "--amp",
                "--amp-dtype", "float16", "--stop-after", "2", "--save", str(tmp_path), *SMALL])
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 2 and ckpt["scaler"]["scale"] > 0
    losses = [float(line.split("loss ")[1].split()[0]) for line in out.splitlines()
              if line.startswith("epoch ") and " step " in line]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)


class _Payload:
    """A pickle that runs a shell command when it is loaded (what a crafted checkpoint could hold)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("flag", ["--resume", "--evaluate"])
def test_a_crafted_checkpoint_runs_no_code(tiny_dataset, tmp_path, flag):
    """--resume and --evaluate read checkpoints with weights_only=True: a pickle that would run a command is refused
    with an error naming the file, and the command never runs."""
    marker = tmp_path / "pwned"
    folder = tmp_path / "ckpt"
    folder.mkdir()
    torch.save({"model": _Payload(marker), "step": 0}, folder / "checkpoint.pt")
    cmd = [sys.executable, "train_example.py", "--data", str(tiny_dataset), flag, str(folder), *SMALL]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode != 0
    assert "checkpoint.pt is not a checkpoint of this script" in proc.stderr and "not loaded" in proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize("flags, kind", [
    (["--method", "saliency_occlusion:size=8", "--copies", "2", "--p-keep-image", "1.0,0.0", "--saliency",
      "normgrad:maxpool:loss"], "free joint step"),
    (["--method", "keep_cutout:size=8", "--saliency", "input_grad:0.5"], "fresh maps"),
    (["--method", "keep_cutout:size=8", "--saliency", "early_head"], "fresh maps"),
], ids=["free_joint", "input_grad_half", "early_head"])
def test_torchrun_same_step_saliency_with_amp(tiny_dataset, tmp_path, flags, kind):
    """The same-step paths (issue 21) under torchrun with --amp (bf16) on the CPU: the step runs on both ranks (the
    free joint step, the fresh low-resolution input gradient, the early head trained beside the model), and DDP
    keeps the replicas equal -- the early head's parameters included."""
    out = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "train_example.py", "--data", str(tiny_dataset), "--batch-size", "4", "--amp", *flags,
                "--stop-after", "3", "--save", str(tmp_path / "run"), "--log-ids", str(tmp_path / "ids"), *SMALL])
    assert f"saliency {flags[-1]}: {kind}" in out, out
    ranks = [json.loads((tmp_path / f"ids.rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["param_checksum"] == ranks[1]["param_checksum"] and math.isfinite(ranks[0]["param_checksum"])
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"]
    assert any(k.startswith("early_head.") for k in state) == (flags[-1] == "early_head")


def test_attentive_cutmix_from_the_model_being_trained(tiny_dataset):
    """``--method attentive_cutmix --saliency attention:layer4``: the top-k cells follow the attention of the model
    being trained (the same step), no checkpoint needed."""
    out = _run([sys.executable, "train_example.py", "--data", str(tiny_dataset), "--batch-size", "4", "--method",
                "attentive_cutmix", "--saliency", "attention:layer4", "--stop-after", "2", *SMALL])
    assert "saliency attention:layer4: fresh maps" in out and "attentive_cutmix:saliency='model'" in out, out
