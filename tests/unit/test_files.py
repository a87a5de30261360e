"""Tree removal that a dying child cannot break (dim.files.remove_tree)."""

from __future__ import annotations

import os
import threading
import time

from dim.files import remove_tree


def _busy_writer(folder, stop: threading.Event) -> None:
    """What a dying rsync does: temporaries created and renamed, for a tenth of a second."""
    n = 0
    dies = time.monotonic() + 0.1
    while not stop.is_set() and time.monotonic() < dies:
        n += 1
        try:
            sub = folder / f"d{n % 7}"
            sub.mkdir(exist_ok=True)
            (sub / f".f{n}.tmp").write_bytes(b"x")
            os.rename(sub / f".f{n}.tmp", sub / f"f{n}")
        except OSError:  # the folder went under it
            if not folder.exists():
                return


def test_a_tree_changing_under_removal_is_removed_without_error(tmp_path):
    for attempt in range(3):
        folder = tmp_path / f"staging-{attempt}"
        for n in range(300):
            (folder / f"d{n % 7}").mkdir(parents=True, exist_ok=True)
            (folder / f"d{n % 7}" / f"f{n}").write_bytes(b"x")
        stop = threading.Event()
        writer = threading.Thread(target=_busy_writer, args=(folder, stop))
        writer.start()
        try:
            remove_tree(folder)
        finally:
            stop.set()
            writer.join()
        assert not folder.exists()


def test_read_only_directories_are_removed(tmp_path):
    folder = tmp_path / "tree"
    (folder / "a/b").mkdir(parents=True)
    (folder / "a/b/file").write_text("x")
    os.chmod(folder / "a/b", 0o500)
    os.chmod(folder / "a", 0o500)
    remove_tree(folder)
    assert not folder.exists()


def test_nothing_there_is_fine(tmp_path):
    remove_tree(tmp_path / "missing")
