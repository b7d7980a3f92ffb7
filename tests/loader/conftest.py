"""Fixtures of the loader's tests."""
from __future__ import annotations

import pytest

from helpers import photo_folder


@pytest.fixture()
def flat_root(tmp_path):
    """Two classes of 8 JPEGs each (40x50), sample i = class i // 8, file i % 8 in sorted order."""
    return photo_folder(tmp_path / "ds", 8)
