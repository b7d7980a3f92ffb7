"""Dataset listing (ImageFolder scans, file lists), header probes, full checks and the verify CLI.

Plain Pillow/NumPy: nothing here builds a DALI pipeline.
"""
from __future__ import annotations

import os
import pickle

import pytest
from PIL import Image, ImageFile

from conftest import READABLE_ODD, UNREADABLE
from pipelines.data.imagefiles import (
    IMAGE_EXTENSIONS, BadImageError, check_image, probe_image, read_file_list, scan_image_folder,
)
from pipelines.data.verify import find_bad_images, main as verify_main


def _img(path, size=(8, 6), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(path, fmt)
    return path


def _listed(out: str) -> set[str]:
    return {line.split(": ", 1)[0] for line in out.splitlines() if line}


# ---------------------------------------------------------------------------------------------
# find_bad_images / check_image / probe_image on the fixture's good, bad and odd files
# ---------------------------------------------------------------------------------------------

def test_find_bad_images_full_and_header_only(bad_images_dir):
    root, files = bad_images_dir
    paths, _, _ = scan_image_folder(root)
    full = find_bad_images(paths, full=True, workers=3)
    assert [p for p, _ in full] == [p for p in paths if p in {str(files[k]) for k in UNREADABLE}]
    reasons = dict(full)
    assert "0 bytes" in reasons[str(files["empty"])]
    assert "not a recognised image" in reasons[str(files["text"])]
    assert "truncated" in reasons[str(files["truncated"])]
    header = find_bad_images(paths, full=False, workers=1)
    assert {p for p, _ in header} == {str(files[k]) for k in UNREADABLE if k != "truncated"}


def test_find_bad_images_order_does_not_depend_on_workers(bad_images_dir):
    root, _ = bad_images_dir
    paths, _, _ = scan_image_folder(root)
    many = paths * 40  # > several chunks, so the pool really runs in parallel
    serial = find_bad_images(many, workers=1, full=False)
    assert find_bad_images(many, workers=4, full=False) == serial
    assert len(serial) == 40 * 3
    with pytest.raises(ValueError, match="workers"):
        find_bad_images(paths, workers=0)
    assert find_bad_images([]) == []


def test_missing_file_and_undecodable_format_are_bad(tmp_path):
    gif = _img(tmp_path / "anim.jpg", fmt="GIF")  # a GIF behind a .jpg name: DALI cannot decode it
    bad = find_bad_images([tmp_path / "gone.jpg", gif])
    assert [p for p, _ in bad] == [str(tmp_path / "gone.jpg"), str(gif)]
    assert bad[0][1] == "file not found" and "GIF" in bad[1][1]
    with pytest.raises(BadImageError, match=r"anim\.jpg.*GIF"):
        probe_image(gif)


def test_bad_image_error_names_the_file_and_survives_pickling(bad_images_dir):
    _, files = bad_images_dir
    with pytest.raises(BadImageError) as err:
        check_image(files["corrupt"])
    assert isinstance(err.value, ValueError)
    assert str(files["corrupt"]) in str(err.value) and err.value.path == str(files["corrupt"])
    copy = pickle.loads(pickle.dumps(err.value))
    assert (copy.path, copy.reason) == (err.value.path, err.value.reason)


def test_probe_reports_mode_format_and_decoded_size(bad_images_dir):
    _, files = bad_images_dir
    infos = {k: probe_image(files[k]) for k in READABLE_ODD}
    assert {k: (i.mode, i.format) for k, i in infos.items()} == {
        "gray": ("L", "JPEG"), "cmyk": ("CMYK", "JPEG"), "rgba_png": ("RGBA", "PNG"),
        "palette_png": ("P", "PNG"), "tiny": ("RGB", "JPEG"), "exif_rotated": ("RGB", "JPEG"),
    }
    assert (infos["tiny"].width, infos["tiny"].height) == (20, 15)
    # Stored 180x60 with orientation 6 (rotate 90): DALI decodes it as 60 wide, 180 high.
    rot = infos["exif_rotated"]
    assert (rot.width, rot.height, rot.orientation) == (60, 180, 6)
    for k in READABLE_ODD:
        assert check_image(files[k], full=True) == infos[k]


@pytest.mark.parametrize("orientation, swapped", [(1, False), (3, False), (5, True), (8, True)])
def test_exif_orientations_swap_only_for_quarter_turns(tmp_path, orientation, swapped):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.jpg"
    Image.new("RGB", (40, 10)).save(path, exif=exif)
    info = probe_image(path)
    assert (info.width, info.height) == ((10, 40) if swapped else (40, 10))


def test_full_check_ignores_a_global_load_truncated_images_setting(bad_images_dir):
    _, files = bad_images_dir
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # someone else's code tolerates truncation ...
    try:
        with pytest.raises(BadImageError, match="truncated"):
            check_image(files["truncated"])  # ... the check still does not
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # and it puts the setting back
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


# ---------------------------------------------------------------------------------------------
# scan_image_folder
# ---------------------------------------------------------------------------------------------

def test_scan_order_labels_recursion_and_skipped_entries(tmp_path):
    for rel in ("b/2.jpg", "b/10.JPEG", "b/sub/1.png", "a/x.webp", "a/y.bmp", "c/deep/er/z.tif"):
        _img(tmp_path / rel, fmt={"jpg": "JPEG", "JPEG": "JPEG", "png": "PNG", "webp": "WEBP",
                                  "bmp": "BMP", "tif": "TIFF"}[rel.rsplit(".", 1)[1]])
    (tmp_path / "a" / "notes.txt").write_text("not listed")
    (tmp_path / "a" / "._x.jpg").write_bytes(b"macOS resource fork")  # hidden: skipped
    _img(tmp_path / ".ipynb_checkpoints" / "k" / "x.jpg")  # hidden class folder: skipped
    _img(tmp_path / "b" / ".cache" / "y.jpg")  # hidden sub-folder: skipped
    (tmp_path / "README.md").write_text("files at the top level are not samples")
    paths, labels, classes = scan_image_folder(tmp_path)
    assert classes == ["a", "b", "c"]
    rel = [os.path.relpath(p, tmp_path) for p in paths]
    assert rel == ["a/x.webp", "a/y.bmp", "b/10.JPEG", "b/2.jpg", "b/sub/1.png", "c/deep/er/z.tif"]
    assert labels == [0, 0, 1, 1, 1, 2]
    assert all(os.path.isabs(p) for p in paths)


def test_scan_matches_torchvision_image_folder(bad_images_dir):
    from torchvision import datasets  # a pinned dependency; imported here to keep the module's start light

    root, _ = bad_images_dir
    paths, labels, classes = scan_image_folder(root)
    ref = datasets.ImageFolder(str(root), loader=lambda p: p,
                               is_valid_file=lambda p: p.lower().endswith(IMAGE_EXTENSIONS))
    assert classes == ref.classes
    assert list(zip(paths, labels)) == [(os.path.abspath(p), y) for p, y in ref.samples]


def test_scan_errors_name_the_folder_and_say_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*does not exist.*one sub-folder per class"):
        scan_image_folder(tmp_path / "nowhere")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FileNotFoundError, match="afile.*not a folder"):
        scan_image_folder(tmp_path / "afile")
    _img(tmp_path / "flat" / "x.jpg")
    with pytest.raises(ValueError, match=r"flat.*no class folders"):
        scan_image_folder(tmp_path / "flat")
    _img(tmp_path / "withempty" / "a" / "x.jpg")
    (tmp_path / "withempty" / "b").mkdir()
    (tmp_path / "withempty" / "b" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"withempty.b.*holds no image.*\.jpg"):
        scan_image_folder(tmp_path / "withempty")


def test_scan_refuses_the_parent_of_split_folders(tmp_path):
    for split in ("train", "val"):
        _img(tmp_path / split / "cat" / "1.jpg")
    with pytest.raises(ValueError, match=r"split folders.*train"):
        scan_image_folder(tmp_path)
    assert scan_image_folder(tmp_path / "train")[2] == ["cat"]


# ---------------------------------------------------------------------------------------------
# read_file_list
# ---------------------------------------------------------------------------------------------

def test_file_list_paths_labels_comments_and_bases(tmp_path):
    listing = tmp_path / "lists" / "train.txt"
    listing.parent.mkdir()
    listing.write_text("# path label\n\n  a/1.jpg 0\nmy photos/2.jpg   3\n/abs/3.png 1  \n   # indented comment\n")
    paths, labels = read_file_list(listing)
    base = str(tmp_path / "lists")
    assert paths == [os.path.join(base, "a/1.jpg"), os.path.join(base, "my photos/2.jpg"), "/abs/3.png"]
    assert labels == [0, 3, 1]
    paths, _ = read_file_list(listing, root=tmp_path / "data")
    assert paths[0] == os.path.join(str(tmp_path / "data"), "a/1.jpg") and paths[2] == "/abs/3.png"


@pytest.mark.parametrize("line, message", [
    ("only_a_path.jpg", r"expected 'path label'"),
    ("x.jpg cat", r"label 'cat' is not an integer"),
    ("x.jpg 1.5", r"not an integer"),
    ("x.jpg -2", r"label -2 is negative"),
])
def test_file_list_errors_name_file_and_line(tmp_path, line, message):
    listing = tmp_path / "bad list.txt"
    listing.write_text(f"# header\ngood.jpg 0\n\n{line}\n")
    with pytest.raises(ValueError, match=rf"bad list\.txt:4: .*{message}"):
        read_file_list(listing)


def test_missing_file_list_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nolist.txt"):
        read_file_list(tmp_path / "nolist.txt")


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

def test_cli_all_good_exits_zero(tmp_path, capsys):
    for i in range(3):
        _img(tmp_path / "c" / f"{i}.png", fmt="PNG")
    assert verify_main([str(tmp_path), "--workers", "2"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "0 of 3" in captured.err


def test_cli_file_list_mode(bad_images_dir, tmp_path, capsys):
    root, files = bad_images_dir
    listing = tmp_path / "list.txt"
    rel = {k: os.path.relpath(files[k], root) for k in ("gray", "truncated", "text")}
    listing.write_text("".join(f"{r} {i}\n" for i, r in enumerate(rel.values())))
    assert verify_main(["--list", str(listing), str(root)]) == 1
    assert _listed(capsys.readouterr().out) == {str(files["truncated"]), str(files["text"])}
    assert verify_main(["--list", str(listing), "--root", str(root), "--header-only"]) == 1
    assert _listed(capsys.readouterr().out) == {str(files["text"])}
    # Without a root, relative paths are taken from the list's folder, where they do not exist.
    assert verify_main(["--list", str(listing)]) == 1
    assert all("file not found" in line for line in capsys.readouterr().out.splitlines())


def test_cli_dataset_errors_exit_two(tmp_path, capsys):
    (tmp_path / "empty_root").mkdir()
    assert verify_main([str(tmp_path / "empty_root")]) == 2
    assert "no class folders" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text("x.jpg 0\ny.jpg dog\n")
    assert verify_main(["--list", str(bad)]) == 2
    assert "bad.txt:2" in capsys.readouterr().err
    assert verify_main(["--list", str(bad), "--root", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        verify_main([])
    assert exc.value.code == 2
