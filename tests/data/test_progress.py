"""Issue 23, class 9: a wait of more than a few seconds shows a tqdm bar on stderr -- on rank 0 when stderr is a
terminal by default, always with ``progress=True``, never with ``progress=False`` (``Runtime(progress=...)``, the
verify CLI's ``--progress`` / ``--no-progress``). The bar's delay is set to 0 here, so the small trees count as long."""
from __future__ import annotations

import pytest
from PIL import Image

import pipelines.data.imagefiles as imagefiles
from pipelines.data.imagefiles import scan_image_folder, show_progress
from pipelines.data.verify import find_bad_images
from pipelines.data.verify import main as verify_main


@pytest.fixture()
def tree(tmp_path, monkeypatch):
    monkeypatch.setattr(imagefiles, "PROGRESS_AFTER_S", 0)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / c / f"{i}.jpg")
    return tmp_path


def test_listing_shows_a_bar_only_when_asked_or_on_a_terminal(tree, capsys, monkeypatch):
    scan_image_folder(tree, progress=True)
    err = capsys.readouterr().err
    assert f"listing {tree}" in err and "2/2" in err
    for progress in (False, None):  # None: stderr is not a terminal under pytest
        scan_image_folder(tree, progress=progress)
        assert capsys.readouterr().err == ""


def test_the_verify_pass_shows_a_bar_only_when_asked(tree, capsys):
    paths, _, _ = scan_image_folder(tree, progress=False)
    find_bad_images(paths, workers=1, progress=True)
    err = capsys.readouterr().err
    assert "checking images" in err and "6/6" in err
    assert verify_main([str(tree), "--progress"]) == 0
    err = capsys.readouterr().err
    assert "checking images" in err and f"listing {tree}" in err
    assert verify_main([str(tree), "--no-progress"]) == 0
    assert capsys.readouterr().err == "0 of 6 files unreadable\n"


def test_the_loader_passes_its_runtime_setting(tree, capsys):
    from pipelines import OcclusionLoader, Runtime

    OcclusionLoader(tree, 2, output_size=8, device="cpu", runtime=Runtime(progress=True))
    assert f"listing {tree}" in capsys.readouterr().err
    OcclusionLoader(tree, 2, output_size=8, device="cpu", runtime={"progress": False})
    assert f"listing {tree}" not in capsys.readouterr().err
    with pytest.raises(TypeError, match="progress"):
        Runtime(progress="yes")


@pytest.mark.parametrize("rank, tty, shown", [(None, True, True), ("0", True, True), ("3", True, False),
                                              (None, False, False), ("0", False, False)])
def test_the_default_is_rank_0_on_a_terminal(monkeypatch, rank, tty, shown):
    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    monkeypatch.setattr(imagefiles.sys.stderr, "isatty", lambda: tty)
    assert show_progress(None) is shown
    assert show_progress(True) is True and show_progress(False) is False
