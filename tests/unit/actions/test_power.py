"""actions.power: the selection is checked before anything runs; failures are results."""

from __future__ import annotations

import pytest

from dim.actions import power
from dim.errors import CredentialsError, DimError
from dim.power.interface import PowerResult


def result(node: str, ok: bool) -> PowerResult:
    return PowerResult(node=node, driver="ipmi", address="-", ok=ok, outcome="on" if ok else "x")


def test_a_missing_credentials_file_is_refused_when_choosing_the_nodes(ctx, tmp_path):
    with pytest.raises(CredentialsError):
        power.select_nodes(ctx, "@compute", credentials_file=tmp_path / "none")


def test_nodes_without_a_bmc_fail_as_results_not_exceptions(ctx, tmp_path):
    credentials = tmp_path / "credentials.toml"
    credentials.write_text('[default]\nusername = "u"\npassword = "p"\n')
    credentials.chmod(0o600)
    chosen = power.select_nodes(ctx, "g[1-2],c01", "c01", credentials_file=credentials)
    assert chosen.names == ["g1", "g2"]
    run = power.status(chosen)
    assert [(r.node, r.ok, r.kind) for r in run.results] == [
        ("g1", False, "config"),
        ("g2", False, "config"),
    ]
    with pytest.raises(DimError, match="2 of 2 nodes failed"):
        run.raise_for_failures()


def test_a_run_without_failures_raises_nothing():
    run = power.PowerRun((result("a", True), result("b", True)), 0.1)
    assert run.failed == 0
    run.raise_for_failures()


def test_the_failure_of_a_lone_node_is_counted_in_the_singular():
    with pytest.raises(DimError, match=r"^1 of 1 node failed$"):
        power.PowerRun((result("a", False),), 0.1).raise_for_failures()
