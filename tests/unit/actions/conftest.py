"""A Context pointing into a temporary folder: the small layout and an empty state folder."""

from __future__ import annotations

import pytest

from dim.actions.context import Context


@pytest.fixture
def ctx(layout_file, tmp_path) -> Context:
    return Context(config=layout_file, state=tmp_path / "state")
