"""actions.images: image commands by name; gc and check over the chosen images."""

from __future__ import annotations

import pytest

from dim.actions import images
from dim.errors import UsageError
from tests.conftest import require_binary


def test_an_undeclared_image_is_refused_before_the_store_is_touched(ctx, tmp_path):
    with pytest.raises(UsageError, match="unknown image 'nope'"):
        images.import_image(ctx, "nope", str(tmp_path))
    assert not ctx.state.exists()


def test_gc_and_check_cover_every_stored_declared_image_or_the_named_one(ctx, tmp_path):
    require_binary("rsync", "rsync")
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "motd").write_text("hello\n")
    assert images.gc(ctx) == [] and images.check(ctx) == []
    assert images.import_image(ctx, "alpha", str(tree)).version == 1
    (tree / "etc" / "motd").write_text("hello again\n")
    assert images.import_image(ctx, "alpha", str(tree), incremental=True).version == 2
    (result,) = images.gc(ctx, dry_run=True)
    assert (result.image, result.removed_versions, result.kept_versions) == ("alpha", [1], [2])
    assert images.report(ctx, "alpha", sizes=False).versions == [1, 2]  # a dry run
    assert [r.image for r in images.check(ctx, "alpha")] == ["alpha"]
    assert [r.image for r in images.check(ctx)] == ["alpha"]
