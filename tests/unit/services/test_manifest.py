"""The journal of what apply installed."""

from dim.services.manifest import Manifest


def test_later_lines_win_and_removals_forget(tmp_path):
    location = str(tmp_path / "applied.list")
    manifest = Manifest.read(location)
    manifest.intend(["/a", "/b"])
    manifest.record([("/a", None), ("/b", "target-1")], [])
    manifest.record([("/b", "target-2")], ["/a"])
    again = Manifest.read(location)
    assert again.paths() == {"/b"}
    assert again.link_target("/b") == "target-2"


def test_an_intended_path_is_known_but_its_target_is_not_trusted(tmp_path):
    location = str(tmp_path / "applied.list")
    Manifest.read(location).intend(["/x"])
    again = Manifest.read(location)
    assert again.paths() == {"/x"}
    assert again.link_target("/x") is None


def test_intending_never_downgrades_a_confirmed_entry(tmp_path):
    location = str(tmp_path / "applied.list")
    manifest = Manifest.read(location)
    manifest.record([("/x", "t")], [])
    manifest.intend(["/x"])
    assert Manifest.read(location).link_target("/x") == "t"


def test_a_manifest_of_bare_paths_reads_as_unconfirmed(tmp_path):
    location = tmp_path / "applied.list"
    location.write_text("/etc/dim/hosts\n/srv/link\n")
    manifest = Manifest.read(str(location))
    assert manifest.paths() == {"/etc/dim/hosts", "/srv/link"}
    assert manifest.link_target("/srv/link") is None


def test_the_journal_is_compacted_when_it_grows(tmp_path):
    location = str(tmp_path / "applied.list")
    manifest = Manifest.read(location)
    for round in range(1200):
        manifest.record([("/same", f"t{round}")], [])
    lines = (tmp_path / "applied.list").read_text().splitlines()
    assert len(lines) < 1200
    assert Manifest.read(location).link_target("/same") == "t1199"


def test_a_record_that_would_be_compacted_right_after_is_written_compact_at_once(tmp_path):
    location = tmp_path / "applied.list"
    manifest = Manifest.read(str(location))
    paths = [f"/n/{k}" for k in range(3000)]
    manifest.intend(paths)
    assert len(location.read_text().splitlines()) == 3000  # before anything is created
    manifest.record([(p, "t" if k % 2 else None) for k, p in enumerate(paths)], [])
    lines = location.read_text().splitlines()
    assert len(lines) == 3000 and lines == sorted(lines)
    again = Manifest.read(str(location))
    assert again.link_target("/n/1") == "t" and again.entries["/n/0"] == ""
    assert again.paths() == set(paths)
