"""cluster.xml: schema, expressions, expansion of node sets, semantic checks and the model."""

from __future__ import annotations

from pathlib import Path

from dim.errors import LayoutError


def read(path: str | Path) -> bytes:
    """cluster.xml's bytes; LayoutError naming the file if it cannot be read.

    Here, not in the parser: a command that finds the layout in the validated-layout cache
    (:mod:`dim.layout_cache`) reads its bytes and imports no parser."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise LayoutError(
            f"cannot read the cluster layout: {exc.strerror}",
            file=str(path),
            hint="pass --config FILE or set DIM_CONFIG",
        ) from exc
