"""The reader's per-file records (issue 20): a file is checked on its first read only, its size comes from the
record afterwards, and any change of the file -- new content, new inode, a restored mtime -- makes it checked again;
bad files are never recorded."""
from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from helpers import grey_scan_jpeg, photo

import pipelines.data.file_cache as file_cache
from pipelines.data.file_cache import FileRecords, read_checked
from pipelines.data.imagefiles import BadImageError, probe_image


@pytest.fixture()
def counted(monkeypatch):
    """check_image as the reader calls it, counting the calls."""
    calls = []
    real = file_cache.check_image

    def check(path, full=True, data=None):
        calls.append((os.path.basename(path), full))
        return real(path, full=full, data=data)

    monkeypatch.setattr(file_cache, "check_image", check)
    return calls


def image(path, size=(40, 30), color=(10, 200, 30)):
    Image.new("RGB", size, color).save(path, quality=90)
    return path


def test_first_read_checks_later_reads_use_the_record(tmp_path, counted):
    paths = [image(tmp_path / f"{i}.jpg", (40 + i, 30)) for i in range(3)]
    records = FileRecords.for_paths(paths, directory=str(tmp_path / "cache"))
    for _ in range(2):
        for i, p in enumerate(paths):
            data, h, w = read_checked(str(p), i, records, "full")
            assert data == p.read_bytes() and (h, w) == (30, 40 + i)
    assert counted == [(f"{i}.jpg", True) for i in range(3)]
    again = FileRecords.for_paths(paths, directory=str(tmp_path / "cache"))  # a later run, or another rank
    assert read_checked(str(paths[1]), 1, again, "full")[1:] == (30, 41)
    assert len(counted) == 3
    read_checked(str(paths[1]), 1, again, "header")  # a record of a full check serves a header-level read
    assert len(counted) == 3


def test_a_header_record_does_not_serve_a_full_check(tmp_path, counted):
    p = image(tmp_path / "a.jpg")
    records = FileRecords.for_paths([p], directory=str(tmp_path / "cache"))
    read_checked(str(p), 0, records, "none")
    read_checked(str(p), 0, records, "full")
    read_checked(str(p), 0, records, "full")
    assert counted == [("a.jpg", False), ("a.jpg", True)]


@pytest.mark.parametrize("change", ["rewritten", "same_size_old_mtime", "replaced_by_rename", "touched"])
def test_any_change_of_the_file_checks_it_again(tmp_path, counted, change):
    p = image(tmp_path / "a.jpg", (40, 30), (10, 200, 30))
    records = FileRecords.for_paths([p], directory=str(tmp_path / "cache"))
    read_checked(str(p), 0, records, "full")
    st = os.stat(p)
    time.sleep(0.01)
    if change == "rewritten":
        image(p, (64, 48))
    elif change == "same_size_old_mtime":  # same bytes count, mtime put back (touch -d, cp -p): ctime moves
        data = bytearray(p.read_bytes())
        p.write_bytes(bytes(data))
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif change == "replaced_by_rename":  # cp -p of another file, then mv: a new inode, the same mtime
        other = image(tmp_path / "b.jpg", (40, 30), (10, 200, 30))
        shutil.copy2(p, other)
        os.replace(other, p)
    else:
        os.utime(p)
    _, h, w = read_checked(str(p), 0, records, "full")
    assert len(counted) == 2
    assert (h, w) == (probe_image(p).height, probe_image(p).width)


def test_bad_files_are_never_recorded(tmp_path, counted, bad_images_dir):
    _, files = bad_images_dir
    p = tmp_path / "t.jpg"
    shutil.copy(files["truncated"], p)
    records = FileRecords.for_paths([p], directory=str(tmp_path / "cache"))
    for _ in range(2):
        with pytest.raises(BadImageError, match=r"t\.jpg: truncated"):
            read_checked(str(p), 0, records, "full")
    assert len(counted) == 2
    with pytest.raises(BadImageError, match=r"gone\.jpg: cannot read file"):
        read_checked(str(tmp_path / "gone.jpg"), 0, records, "full")


def test_unwritable_cache_folder_warns_and_checks_every_read(tmp_path, counted):
    p = image(tmp_path / "a.jpg")
    (tmp_path / "file").write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="cannot keep the file records"):
        records = FileRecords.for_paths([p], directory=str(tmp_path / "file" / "cache"))
    assert records is None
    read_checked(str(p), 0, records, "full")
    read_checked(str(p), 0, records, "full")
    assert len(counted) == 2


def test_records_of_another_list_start_afresh(tmp_path):
    paths = [image(tmp_path / f"{i}.jpg") for i in range(2)]
    records = FileRecords.for_paths(paths, directory=str(tmp_path / "cache"))
    read_checked(str(paths[0]), 0, records, "full")
    assert records.records["level"].tolist() == [2, 0]
    bigger = FileRecords.for_paths(paths + [image(tmp_path / "2.jpg")], directory=str(tmp_path / "cache"))
    assert bigger.path != records.path and bigger.records["level"].tolist() == [0, 0, 0]
    os.truncate(records.path, 100)  # a damaged file: rebuilt empty
    with pytest.warns(UserWarning, match="ignoring the file records"):
        assert FileRecords.for_paths(paths, directory=str(tmp_path / "cache")).records["level"].tolist() == [0, 0]


# -- issue 23, class 4: what "unchanged" means, damaged record files, the pixel limit ----------------------------

@pytest.mark.parametrize("how", ["rewritten_in_place", "renamed_over"])
def test_a_file_replaced_by_a_damaged_one_of_the_same_size_and_mtime_is_checked_again(tmp_path, how):
    """The issue's case: a file verified once, then replaced by one of the same size with its mtime put back
    (os.utime), was trusted from the cache and trained on as a grey band. The record's key holds the inode and the
    ctime, which no user-level call sets back, so the replacement is checked (and refused) again."""
    good = tmp_path / "a.jpg"
    photo(375, 500).save(good, quality=90)
    records = FileRecords.for_paths([good], directory=str(tmp_path / "cache"))
    read_checked(str(good), 0, records, "full")
    st = os.stat(good)
    damaged = grey_scan_jpeg()  # the same photo with an EOI marker in its scan data: grey from there on
    assert len(damaged) == st.st_size
    if how == "rewritten_in_place":
        with open(good, "r+b") as f:  # the same inode
            f.write(damaged)
    else:
        (tmp_path / "new.jpg").write_bytes(damaged)
        os.replace(tmp_path / "new.jpg", good)
    os.utime(good, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(good).st_size, os.stat(good).st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    with pytest.raises(BadImageError, match=r"a\.jpg: "):
        read_checked(str(good), 0, records, "full")


def _damage(path, how, monkeypatch):
    if how == "truncated":
        os.truncate(path, os.path.getsize(path) // 2)
    elif how == "garbage":
        size = os.path.getsize(path)
        with open(path, "wb") as f:
            f.write(np.random.default_rng(0).integers(0, 256, size, np.uint8).tobytes())
    elif how == "other_version":
        with open(path, "r+b") as f:
            f.write(file_cache.MAGIC.replace(b"v1", b"v0"))
    else:  # "unreadable"
        os.chmod(path, 0)
        if os.geteuid() == 0:  # root opens a file of mode 0 all the same: the open fails as it would for a user
            real_open = os.open

            def refuse(p, flags, *args):
                if os.fspath(p) == path:
                    raise PermissionError(13, "Permission denied", p)
                return real_open(p, flags, *args)

            monkeypatch.setattr(os, "open", refuse)


@pytest.mark.parametrize("how", ["truncated", "garbage", "other_version", "unreadable"])
def test_a_damaged_record_file_is_named_in_a_warning_and_rebuilt(tmp_path, monkeypatch, how):
    """A damaged cache file must never stop a run: it is set aside with a warning naming it, rebuilt empty, and the
    records written next are used."""
    paths = [image(tmp_path / f"{i}.jpg") for i in range(3)]
    cache = str(tmp_path / "cache")
    records = FileRecords.for_paths(paths, directory=cache)
    read_checked(str(paths[0]), 0, records, "full")
    _damage(records.path, how, monkeypatch)
    with pytest.warns(UserWarning, match=f"ignoring the file records {records.path} "):
        rebuilt = FileRecords.for_paths(paths, directory=cache)
    monkeypatch.undo()
    read_checked(str(paths[1]), 1, rebuilt, "full")
    assert FileRecords.for_paths(paths, directory=cache).records["level"].tolist() == [0, 2, 0]


def test_a_record_file_removed_during_the_run_turns_into_checking_every_read(tmp_path, counted):
    paths = [image(tmp_path / f"{i}.jpg") for i in range(2)]
    records = FileRecords.for_paths(paths, directory=str(tmp_path / "cache"))
    os.remove(records.path)  # a cache clean-up after the constructor, before a reader worker maps it
    with pytest.warns(UserWarning, match=f"cannot use the file records {records.path}"):
        read_checked(str(paths[0]), 0, records, "full")
    read_checked(str(paths[0]), 0, records, "full")
    assert len(counted) == 2


def test_a_record_made_under_another_pixel_limit_is_judged_by_the_limit_in_use(tmp_path, monkeypatch, counted):
    """The issue's case: a limit changed after the cache was filled failed at the first batch, advising the setting
    already in use. A record carries the image's size, so it is judged by the limit in use: an image above twice
    that limit is checked again and refused, naming the file and the limit in use; under a limit it fits, the record
    serves."""
    big = image(tmp_path / "big.jpg", (80, 60))
    records = FileRecords.for_paths([big], directory=str(tmp_path / "cache"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    read_checked(str(big), 0, records, "full")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 80 x 60 > 2 x 1000
    with pytest.raises(BadImageError, match=r"big\.jpg: .*the limit in use is Runtime\(max_image_pixels=1000\)"):
        read_checked(str(big), 0, records, "full")
    for limit in (None, 2400):
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        assert read_checked(str(big), 0, records, "full")[1:] == (60, 80)
    assert len(counted) == 2  # the first read and the refusal; the record served the rest


def test_a_reader_worker_applies_the_runtime_pixel_limit_none_included(monkeypatch):
    """``Runtime(max_image_pixels=None)`` (no limit) left the spawned workers at Pillow's default, so a large image
    was refused with advice to pass None -- the setting in use."""
    from pipelines.loader import lifecycle

    monkeypatch.setattr(lifecycle, "_watchdog_started", True)  # no watchdog thread in the test process
    for limit in (None, 1234):
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 89_478_485)  # a fresh worker's
        lifecycle.on_worker_start(lifecycle.worker_setup_for(limit) | {"parent_pid": os.getppid()})
        assert Image.MAX_IMAGE_PIXELS == limit
