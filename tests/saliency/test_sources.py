"""A new saliency source is one class (issue 19): a folder of precomputed maps, one per sample, written here as a
:class:`~pipelines.saliency.base.SaliencySource` and nothing else, steers two methods' searches in the graph."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from pipelines import OcclusionLoader
from pipelines.data.imagefiles import probe_image
from pipelines.saliency.base import SaliencySource, SlotSpec, SourceRead

SIZE, BATCH, WINDOW = 64, 6, 16


@dataclass(frozen=True)
class FolderSaliency(SaliencySource):
    """``folder/<sample_id>.npy``: a float32 map of the source image's size. The reader crops it to the row's
    window, resizes it (nearest) to the output size and flips it as the row is flipped; the graph reads it."""

    name = "folder"

    folder: str = ""

    def slots(self):
        return (SlotSpec("map", np.float32),)

    def read(self, crop, rng):
        maps = []
        for sid, (y0, x0, h, w), flip in zip(crop.sample_id, crop.crop, crop.flip):
            full = np.load(f"{self.folder}/{int(sid)}.npy")
            ys = y0 + ((np.arange(crop.size) + 0.5) * h / crop.size).astype(int)
            xs = x0 + ((np.arange(crop.size) + 0.5) * w / crop.size).astype(int)
            m = full[ys][:, xs]
            maps.append(m[:, ::-1] if flip else m)
        n = len(maps)
        return SourceRead({"map": np.stack(maps).astype(np.float32)}, np.ones(n, bool), np.zeros(n, np.int32))

    def graph_map(self, g, u8, mirror, nodes):
        return g.on(nodes["map"])


def hot_spot_of(sample_id: int, hw) -> tuple[int, int]:
    """A point of the source image, fixed per sample."""
    rng = np.random.default_rng(sample_id)
    return int(rng.integers(hw[0] // 4, 3 * hw[0] // 4)), int(rng.integers(hw[1] // 4, 3 * hw[1] // 4))


@pytest.fixture(scope="module")
def maps_folder(tiny_dataset, tmp_path_factory):
    """One map per training sample: zero but for a bright 9 x 9 square around its hot spot."""
    folder = tmp_path_factory.mktemp("maps")
    loader = OcclusionLoader(tiny_dataset / "train", BATCH, device="cpu", runtime=dict(verify="none"))
    for sid, path in enumerate(loader.data.paths):
        info = probe_image(path)
        m = np.zeros((info.height, info.width), np.float32)
        y, x = hot_spot_of(sid, (info.height, info.width))
        m[max(y - 4, 0):y + 5, max(x - 4, 0):x + 5] = 1.0
        np.save(folder / f"{sid}.npy", m)
    return str(folder)


def spot_in_output(meta, r):
    """The output pixel of row ``r``'s hot spot, or None when its crop window misses it."""
    y0, x0, h, w = (int(v) for v in meta["crop"][r])
    sy, sx = hot_spot_of(int(meta["sample_id"][r]), [int(v) for v in meta["image_size"][r]])
    if not (y0 <= sy < y0 + h and x0 <= sx < x0 + w):
        return None
    oy, ox = int((sy - y0) * SIZE / h), int((sx - x0) * SIZE / w)
    return oy, (SIZE - 1 - ox) if int(meta["flip"][r]) else ox


@pytest.mark.parametrize("method, opts", [("saliency_occlusion", dict(jitter=0)), ("keep_cutout", {})])
def test_a_folder_of_maps_steers_two_methods(tiny_dataset, maps_folder, method, opts):
    loader = OcclusionLoader(tiny_dataset / "train", BATCH, method, saliency=FolderSaliency(maps_folder),
                             size=WINDOW, output_size=SIZE, device="cpu", seed=3,
                             runtime=dict(num_threads=1, py_workers=1), **opts)
    checked = 0
    for batch in loader:
        meta = batch.meta
        assert (meta["map_source"] == 1).all() and (meta["map_age"] == 0).all()
        for r in range(batch.images.shape[0]):
            spot = spot_in_output(meta, r)
            y0, x0, y1, x1 = (int(v) for v in meta["boxes"][r, 0])
            if spot is None or y0 < 0:
                continue
            inside = y0 - 2 <= spot[0] < y1 + 2 and x0 - 2 <= spot[1] < x1 + 2  # 2 px of resize rounding
            # Fong & Vedaldi erase the most salient window; KeepAugment's selective cut spares the salient region
            assert inside if method == "saliency_occlusion" else not (y0 + 2 <= spot[0] < y1 - 2 and
                                                                       x0 + 2 <= spot[1] < x1 - 2), (r, spot)
            checked += 1
    loader.close()
    assert checked >= 8
