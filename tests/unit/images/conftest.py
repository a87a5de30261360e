"""Fixtures of the image unit tests: dim in-process on a layout of its own, a source tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.image_trees import Dim, base_tree


@pytest.fixture
def dim(tmp_path, capsys) -> Dim:
    return Dim(tmp_path, capsys)


@pytest.fixture
def src(tmp_path) -> Path:
    """A small system tree to import (see :func:`tests.image_trees.base_tree`)."""
    return base_tree(tmp_path / "src")
