"""The Context makes its paths absolute once, whoever builds it (the CLI, the lab, a test)."""

from pathlib import Path

from dim.actions.context import Context


def test_relative_paths_are_made_absolute_against_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ctx = Context(config=Path("conf/cluster.xml"), state=Path("relative/../state"))
    assert ctx.config == tmp_path / "conf/cluster.xml"
    assert ctx.state == tmp_path / "state"
    assert ctx.template_dir == tmp_path / "conf/templates"
    assert ctx.store().root == tmp_path / "state"
