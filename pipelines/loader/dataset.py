"""What a loader reads: the samples of an ImageFolder tree or a ``path label`` list, their class count, and the
records of what the reader learnt about each file (:mod:`pipelines.data.file_cache`). Nothing here reads a file:
the reader checks each one when it first reads it (:class:`~pipelines.loader.runtime.Runtime`'s ``verify``)."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from pipelines.data.file_cache import FileRecords
from pipelines.data.imagefiles import read_file_list, scan_image_folder
from pipelines.saliency.bank import dataset_fingerprint

#: An inferred class count above ``LABEL_SLACK + LABEL_SPREAD * (distinct labels)`` is taken for a typo.
LABEL_SLACK = 1000
LABEL_SPREAD = 10


class Dataset:
    """The samples of ``root`` (class-folder root ``root/<class>/<image>`` or a text file of ``path label``
    lines): ``paths``, ``labels`` (int64), ``classes`` (folder names, None for a list), ``num_classes`` and
    ``records`` (None when the cache folder cannot be written). ``progress``: whether listing a large tree shows a bar
    (:func:`pipelines.data.imagefiles.show_progress`)."""

    def __init__(self, root, num_classes: int | None, progress: bool | None = None):
        self.root = Path(root)
        if self.root.is_file():
            self.paths, labels = read_file_list(self.root)
            self.classes = None
        else:
            self.paths, labels, self.classes = scan_image_folder(self.root, progress=progress)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = infer_num_classes(self.labels, self.paths, num_classes, self.root)
        self.records = FileRecords.for_paths(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def names(self) -> list[str]:
        """The sample paths relative to the dataset's folder (what a bank's dataset fingerprint hashes)."""
        base = self.root if self.root.is_dir() else self.root.parent
        return [os.path.relpath(p, base) for p in self.paths]

    @functools.cached_property
    def fingerprint(self) -> str:
        """:func:`~pipelines.saliency.bank.dataset_fingerprint` of :meth:`names` and the labels, computed once: the
        bank and a state's identity both check it, and at ImageNet size it takes seconds."""
        return dataset_fingerprint(self.names(), self.labels)


def infer_num_classes(labels, paths, num_classes, source) -> int:
    """``num_classes`` when given, else ``max(labels) + 1`` -- unless that is implausibly large.

    A typo label (``100000000`` in a list of labels 0..9) would otherwise allocate targets of 100M
    classes per row (800 MB for two rows) without a word. When the largest label exceeds
    ``1000 + 10 * (number of distinct labels)`` and ``num_classes`` was not given, raise naming the
    label and its first file; passing ``num_classes`` explicitly accepts any label below it.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        raise ValueError(f"{source} lists no samples")
    top = int(labels.max())
    if num_classes is not None:
        if top >= int(num_classes):
            raise ValueError(f"num_classes={num_classes} but the labels of {source} go up to {top} "
                             f"({paths[int(np.argmax(labels))]})")
        return int(num_classes)
    distinct = int(np.unique(labels).size)
    if top + 1 > LABEL_SLACK + LABEL_SPREAD * distinct:
        raise ValueError(f"label {top} of {paths[int(np.argmax(labels))]} (in {source}) is far above the others "
                         f"({distinct} distinct labels): a typo? Fix it, or pass num_classes= explicitly "
                         f"(targets then have that many columns)")
    return top + 1
