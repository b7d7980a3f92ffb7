"""Pictures: ``pipelines.tools.show`` draws a grid for every registered method from the loader's own batch, and
``bench.plot`` draws benchmark JSONs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipelines.methods import METHODS

PNG = b"\x89PNG\r\n\x1a\n"


def test_denormalise_inverts_the_loader_normalisation():
    from pipelines.loader.graph import IMAGENET_MEAN, IMAGENET_STD
    from pipelines.tools.show import denormalise

    rgb = np.random.default_rng(0).random((2, 5, 7, 3)).astype(np.float32)
    norm = ((rgb - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(denormalise(norm), rgb, atol=1e-6)


@pytest.fixture(scope="module")
def attention_checkpoint(tmp_path_factory):
    import torchvision

    path = tmp_path_factory.mktemp("ckpt") / "resnet18.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


@pytest.mark.parametrize("method", METHODS)
def test_show_writes_a_grid_for_every_method(method, tiny_dataset, tmp_path, attention_checkpoint):
    from pipelines.tools.show import main

    spec = method
    if method == "attentive_cutmix":
        spec = f"attentive_cutmix:checkpoint={attention_checkpoint},arch=resnet18"  # 224 px: the 7 x 7 grid
    out = tmp_path / f"{method}.png"
    main([str(tiny_dataset), "--method", spec, "--rows", "2", "--copies", "2", "--size", "64", "--out", str(out)])
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 5000


def test_show_draws_the_batch_the_loader_gives(tiny_dataset):
    """The grid is of the loader's batch 0 (same seed, same boxes), and every row's box list is what is drawn."""
    from pipelines import OcclusionLoader
    from pipelines.tools.show import first_batch

    batch, classes = first_batch(tiny_dataset, "cutout", rows=3, size=48, seed=3)
    loader = OcclusionLoader(tiny_dataset / "train", 3, "cutout", output_size=48, device="cpu", seed=3,
                             runtime=dict(num_threads=1, py_workers=1, verify="none"))
    ref = next(iter(loader))
    loader.close()
    assert torch.equal(batch.images, ref.images) and torch.equal(batch.meta["boxes"], ref.meta["boxes"])
    assert classes == ["00_disc", "01_square", "02_triangle"]


def test_plot_draws_the_loader_benchmark(tmp_path):
    from pathlib import Path

    from bench.plot import entries, main

    src = Path(__file__).resolve().parents[2] / "results" / "loader_bench.json"
    payload = json.loads(src.read_text())
    assert [n for n, _ in entries(payload)] == list(payload["results"])
    main([str(src), "--out-dir", str(tmp_path)])
    out = tmp_path / "loader_bench.png"
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 10000


def test_plot_names_a_missing_file(tmp_path):
    from bench.plot import main

    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing.json")])
