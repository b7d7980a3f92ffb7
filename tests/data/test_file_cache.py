"""The reader's per-file records (issue 20): a file is checked on its first read only, its size comes from the
record afterwards, and any change of the file -- new content, new inode, a restored mtime -- makes it checked again;
bad files are never recorded."""
from __future__ import annotations

import os
import shutil
import time

import pytest
from PIL import Image

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
    assert FileRecords.for_paths(paths, directory=str(tmp_path / "cache")).records["level"].tolist() == [0, 0]
