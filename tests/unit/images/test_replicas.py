"""Node replicas: real copies of the persistent paths, the three-way rule, switch, reset, diff.

The layout (tests/image_trees.py) gives image alpha the persistent paths /etc and /var and
the keep-outs /etc/hostname, /var/log and /etc/ssh/ssh_host_*; image beta persists /etc.
"""

from __future__ import annotations

import json
import os

from dim.boot.targets import Snapshot
from dim.paths import StatePaths
from dim.records import BootTarget
from tests.image_trees import T1, digest, inode, snapshot, touch_tree, version_tree, write


def _replica(dim, node="n1", image="alpha"):
    return dim.store.paths.replica(node, image)


def _imported(dim, src, *nodes):
    dim.ok("image", "import", "alpha", "--from", str(src))
    for node in nodes:
        dim.ok("node", "switch", node, "alpha")


def test_switch_makes_real_copies_of_the_persistent_paths_without_keep_outs(dim, src):
    _imported(dim, src)
    out = dim.ok("node", "switch", "n[1-2]", "alpha")
    assert "new replicas for n[1-2]" in out
    version = version_tree(dim.store, "alpha", 1)
    replica = _replica(dim)
    assert sorted(os.listdir(replica)) == ["etc", "var"]  # /usr, /proc… are shared from live
    assert (dim.state / "nodes/n1/alpha.version").read_text() == "1\n"
    expected = {
        p: e
        for p, e in snapshot(version).items()
        if p.startswith(("etc", "var"))
        and p not in ("etc/hostname", "etc/ssh/ssh_host_ed25519_key")
        and not p.startswith("var/log")
    }
    mine = snapshot(replica)
    del mine["."]
    # metadata equal except the times of directories whose keep-outs were left out
    for folder in ("etc", "etc/ssh", "var"):
        mine[folder], expected[folder] = mine[folder][:3], expected[folder][:3]
    assert mine == expected
    assert not (replica / "etc/hostname").exists()
    assert not (replica / "var/log").exists()
    assert not list((replica / "etc/ssh").glob("ssh_host_*"))
    for path in (p for p, e in expected.items() if not e[0].startswith("d")):
        assert inode(replica / path) != inode(version / path), f"{path} is a hard link"
        assert inode(replica / path) != inode(dim.store.paths.live("alpha") / path), path
    # within the replica, the hard-link structure of the image is kept… (none under /etc here)
    assert inode(_replica(dim, "n2") / "etc/motd") != inode(replica / "etc/motd")


def test_an_unchanged_replica_file_follows_the_image_and_a_changed_one_is_a_conflict(dim, src):
    _imported(dim, src, "n[1-2]")
    # n1 changes its motd and removes keep.conf; n2 changes nothing
    write(_replica(dim, "n1"), "etc/motd", "n1 was here\n", mtime=T1)
    (_replica(dim, "n1") / "etc/app/keep.conf").unlink()
    write(src, "etc/motd", "new welcome\n", mtime=T1 + 1)
    write(src, "etc/app/app.conf", "level=2\n", mtime=T1)
    write(src, "etc/app/keep.conf", "changed too\n", mtime=T1)
    write(src, "var/lib/app/added", "added\n", mtime=T1)
    (src / "var/lib/app/state").unlink()
    touch_tree(src)
    out = dim.ok("image", "sync", "alpha", "--from", str(src))
    assert "2 replicas updated; 2 conflicts" in out
    assert "  conflict: /etc/app/keep.conf changed by n1: left alone (--force overwrites)" in out
    assert "  conflict: /etc/motd changed by n1: left alone (--force overwrites)" in out
    n1, n2 = _replica(dim, "n1"), _replica(dim, "n2")
    assert (n1 / "etc/motd").read_text() == "n1 was here\n"
    assert not (n1 / "etc/app/keep.conf").exists()
    for replica in (n1, n2):
        assert (replica / "etc/app/app.conf").read_text() == "level=2\n"
        assert (replica / "var/lib/app/added").read_text() == "added\n"
        assert not (replica / "var/lib/app/state").exists()
        assert (replica.parent / "alpha.version").read_text() == "2\n"
    assert (n2 / "etc/motd").read_text() == "new welcome\n"
    assert (n2 / "etc/app/keep.conf").read_text() == "changed too\n"
    version = version_tree(dim.store, "alpha", 2)
    assert snapshot(n2 / "etc/app", dir_times=False) == snapshot(
        version / "etc/app", dir_times=False
    )
    assert inode(n2 / "etc/motd") != inode(version / "etc/motd")

    # --force: the node's change is overwritten
    write(src, "etc/motd", "newer welcome\n", mtime=T1 + 2)
    touch_tree(src)
    out = dim.ok("image", "sync", "alpha", "--from", str(src), "--force", "--json")
    result = json.loads(out)
    assert result["conflicts"] == [] and result["replicas_updated"] == 2
    assert (n1 / "etc/motd").read_text() == "newer welcome\n"


def test_a_conflict_is_not_reported_when_the_node_made_the_same_change(dim, src):
    _imported(dim, src, "n1")
    write(_replica(dim), "etc/motd", "same\n", mtime=T1)
    write(src, "etc/motd", "same\n", mtime=T1)
    touch_tree(src)
    out = dim.ok("image", "sync", "alpha", "--from", str(src))
    assert "0 conflicts" in out


def test_keep_outs_are_never_replicated(dim, src):
    _imported(dim, src, "n1")
    write(src, "etc/hostname", "renamed\n", mtime=T1)
    write(src, "var/log/new.log", "log\n", mtime=T1)
    write(src, "etc/ssh/ssh_host_rsa_key", "key\n", 0o600, mtime=T1)
    touch_tree(src)
    out = dim.ok("image", "sync", "alpha", "--from", str(src))
    assert "0 replicas updated; 0 conflicts" in out
    replica = _replica(dim)
    assert not (replica / "etc/hostname").exists()
    assert not (replica / "var/log").exists()
    assert not (replica / "etc/ssh/ssh_host_rsa_key").exists()
    assert (dim.store.paths.live("alpha") / "etc/ssh/ssh_host_rsa_key").exists()


def test_a_replica_is_kept_when_its_node_switches_away_and_found_again(dim, src):
    _imported(dim, src, "n1")
    dim.ok("image", "import", "beta", "--from", str(src))
    write(_replica(dim), "var/lib/app/state", "42\n", mtime=T1)
    out = dim.ok("node", "switch", "n1", "beta")
    assert "new replicas for n1" in out
    assert (dim.state / "nodes/n1/beta/etc/motd").exists()
    assert (dim.state / "nodes/n1/alpha/var/lib/app/state").read_text() == "42\n"
    out = dim.ok("node", "switch", "n1", "alpha")
    assert "kept replicas found for n1" in out and "new replicas for no node" in out
    assert (_replica(dim) / "var/lib/app/state").read_text() == "42\n"
    # a replica kept aside still follows its image, by the three-way rule
    dim.ok("node", "switch", "n1", "beta")
    write(src, "etc/app/app.conf", "level=9\n", mtime=T1)
    touch_tree(src)
    dim.ok("image", "sync", "alpha", "--from", str(src))
    assert (_replica(dim) / "etc/app/app.conf").read_text() == "level=9\n"
    assert (_replica(dim) / "var/lib/app/state").read_text() == "42\n"


def test_node_diff_lists_what_the_node_changed(dim, src):
    _imported(dim, src, "n1")
    replica = _replica(dim)
    write(replica, "etc/motd", "mine\n", mtime=T1)
    write(replica, "etc/app/local.conf", "x\n")
    (replica / "var/lib/app/state").unlink()
    os.chmod(replica / "etc/app/keep.conf", 0o600)
    write(replica, "etc/hostname", "n1\n")  # a keep-out: the node's own, never a difference
    assert sorted(dim.ok("node", "diff", "n1").splitlines()) == [
        "+ /etc/app/local.conf",
        "- /var/lib/app/state",
        "~ /etc/app/keep.conf",
        "~ /etc/motd",
    ]
    assert json.loads(dim.ok("node", "diff", "n1", "--json"))["removed"] == ["/var/lib/app/state"]
    run = dim("node", "diff", "n2")
    assert run.status == 2 and run.err == "dim: error: node n2 has no image\n"


def test_node_diff_of_several_nodes_is_refused_clearly(dim, src):
    _imported(dim, src, "n[1-2]")
    run = dim("node", "diff", "n[1-2]")
    assert run.status == 2
    assert run.err.startswith("dim: error: ")
    assert "one node" in run.err


def test_reset_gives_a_fresh_replica_and_keeps_the_old_one_until_gc(dim, src):
    _imported(dim, src, "n1")
    replica = _replica(dim)
    root_inode = inode(replica)
    write(replica, "etc/motd", "mine\n", mtime=T1)
    write(replica, "var/lib/app/extra", "mine\n")
    out = dim.ok("node", "reset", "n1", "--yes")
    assert out == "n1: fresh replicas of alpha; old ones kept until gc\n"
    assert (replica / "etc/motd").read_text() == "welcome\n"
    assert not (replica / "var/lib/app/extra").exists()
    assert inode(replica) == root_inode  # an NFS export root: never recreated
    assert dim.ok("node", "diff", "n1") == ""
    (aside,) = (dim.state / "nodes/n1").glob(".alpha.reset-*")
    assert (aside / "etc/motd").read_text() == "mine\n"
    assert (aside / "var/lib/app/extra").exists()
    out = dim.ok("image", "gc", "alpha")
    assert "and 1 reset replicas" in out
    assert not aside.exists()
    assert (replica / "etc/motd").read_text() == "welcome\n"


def test_reset_twice_in_a_row_keeps_both_old_replicas(dim, src):
    _imported(dim, src, "n1")
    write(_replica(dim), "etc/motd", "first\n", mtime=T1)
    dim.ok("node", "reset", "n1", "--yes")
    write(_replica(dim), "etc/motd", "second\n", mtime=T1)
    dim.ok("node", "reset", "n1", "--yes")  # within the same second
    asides = sorted((dim.state / "nodes/n1").glob(".alpha.reset-*"))
    assert sorted((a / "etc/motd").read_text() for a in asides) == ["first\n", "second\n"]


def test_image_show_reports_the_disk_used_by_each_replica(dim, src):
    write(src, "var/lib/app/big", os.urandom(300_000))
    touch_tree(src)
    _imported(dim, src, "n[1-2]")
    write(_replica(dim, "n2"), "var/lib/app/more", os.urandom(700_000))
    info = json.loads(dim.ok("image", "show", "alpha", "--json"))
    assert info["nodes"] == "n[1-2]" and info["versions"] == [1] and info["live"] == 1
    n1, n2 = info["replicas"]["n1"], info["replicas"]["n2"]
    assert n1["version"] == n2["version"] == 1
    assert 300_000 <= n1["bytes"] < 400_000
    assert n2["bytes"] - n1["bytes"] >= 700_000
    lines = dim.ok("image", "show", "alpha").splitlines()
    assert lines[0] == "alpha: no ELF binary, versions 1, live 1, used by n[1-2]"
    assert lines[1].split() == ["REPLICA", "VERSION", "DISK"]
    assert lines[2].split()[:2] == ["n1", "1"] and lines[2].endswith("kB")
    assert lines[3].split()[:2] == ["n2", "1"] and lines[3].endswith("MB")


def test_rollback_reaches_replicas_by_the_three_way_rule(dim, src):
    _imported(dim, src, "n[1-2]")
    replica_v1 = digest(_replica(dim, "n2") / "etc/app", dir_times=False)
    write(src, "etc/app/app.conf", "level=2\n", mtime=T1)
    touch_tree(src)
    dim.ok("image", "sync", "alpha", "--from", str(src))
    write(_replica(dim, "n1"), "etc/app/app.conf", "n1's own\n", mtime=T1 + 5)
    out = dim.ok("image", "rollback", "alpha", "1")
    assert "1 conflicts" in out and "/etc/app/app.conf changed by n1" in out
    assert digest(_replica(dim, "n2") / "etc/app", dir_times=False) == replica_v1
    assert (_replica(dim, "n1") / "etc/app/app.conf").read_text() == "n1's own\n"


def test_switch_with_reset_resets_the_switched_nodes_through_their_bmcs(dim, src, monkeypatch):
    from dim.actions import power as remote
    from dim.cli import power as cli_power

    _imported(dim, src)
    picked, done = [], []
    monkeypatch.setattr(
        remote, "select_nodes", lambda ctx, nodeset: picked.append(nodeset) or nodeset
    )
    monkeypatch.setattr(
        cli_power,
        "act",
        lambda _ctx, chosen, action, _options, yes: done.append((chosen, action, yes)),
    )
    out = dim.ok("node", "switch", "n[1-2]", "alpha", "--reset", "--yes")
    assert "image alpha (2 switched)" in out
    assert picked == ["n[1-2]"] and done == [("n[1-2]", "reset", True)]


def test_switch_points_each_nodes_installed_loader_files_at_the_new_image(dim, src, tmp_path):
    """PXELINUX and GRUB read the node's own file over TFTP: a switch retargets it, so that
    a reset is all a switch takes; a root where nothing was applied is left alone."""
    dim.ok("image", "import", "beta", "--from", str(src))
    _imported(dim, src, "n1")
    dim.ok("node", "set", "n1", "--mac", "52:54:00:78:00:01")
    root = tmp_path / "root"
    dim.ok("apply", "--root", str(root), "--skip-validation")
    grub = root / "srv/dim/tftp/grub/nodes/52:54:00:78:00:01.cfg"
    pxelinux = root / "srv/dim/tftp/pxelinux.cfg/01-52-54-00-78-00-01"
    assert os.readlink(grub) == "../dim-alpha.cfg" and os.readlink(pxelinux) == "dim-alpha"
    inode_before = os.lstat(grub).st_ino
    out = dim.ok("node", "switch", "n1", "beta", "--root", str(root))
    assert os.readlink(grub) == "../dim-beta.cfg" and os.readlink(pxelinux) == "dim-beta"
    assert os.lstat(grub).st_ino != inode_before  # replaced by a rename, never missing
    assert "2 loader files" in out  # iPXE nodes ask dim serve: no file of theirs to point
    # what apply would render now is what the switch wrote: nothing left for it to do
    assert ": 0 files changed" in dim.ok("apply", "--root", str(root), "--skip-validation")
    dim.ok("node", "switch", "n1", "alpha", "--root", str(tmp_path / "elsewhere"))
    assert os.readlink(grub) == "../dim-beta.cfg"  # another root: not touched


def test_switch_points_only_the_links_that_apply_renders_for_the_node(dim, src, tmp_path):
    """dnsmasq with the default loaders (iPXE) and n1 declared secure-boot: apply links n1's
    GRUB file alone (shim loads GRUB), and the switch retargets that one; a PXELINUX file by
    its MAC that dim does not render (the site's own, say) is left as it is."""
    layout = dim.config.read_text().replace('dhcp="none"', 'dhcp="dnsmasq"')
    dim.config.write_text(layout.replace("</group>", '<node name="n1" secure-boot="yes"/></group>'))
    dim.ok("image", "import", "beta", "--from", str(src))
    _imported(dim, src, "n1")
    dim.ok("node", "set", "n1", "--mac", "52:54:00:78:00:01")
    root = tmp_path / "root"
    dim.ok("apply", "--root", str(root), "--skip-validation", "--no-reload")
    grub = root / "srv/dim/tftp/grub/nodes/52:54:00:78:00:01.cfg"
    pxelinux = root / "srv/dim/tftp/pxelinux.cfg/01-52-54-00-78-00-01"
    assert os.readlink(grub) == "../dim-alpha.cfg" and not pxelinux.is_symlink()
    pxelinux.symlink_to("dim-alpha")
    out = dim.ok("node", "switch", "n1", "beta", "--root", str(root))
    assert os.readlink(grub) == "../dim-beta.cfg" and os.readlink(pxelinux) == "dim-alpha"
    assert "1 loader files" in out


def test_a_switch_rewrites_the_boot_targets_dim_serve_answers_from_in_an_outage(dim, src):
    _imported(dim, src, "n1")
    dim.ok("image", "import", "beta", "--from", str(src))
    dim.ok("node", "set", "n1", "--mac", "52:54:00:00:00:01")
    dim.ok("node", "switch", "n1", "beta")
    found = Snapshot(StatePaths(dim.state).boot_targets).targets()
    assert found == {"52:54:00:00:00:01": BootTarget("n1", "boot", "beta")}


def test_conflicts_are_kept_per_node_until_a_change_reaches_the_path_or_a_reset(dim, src):
    from dim.images.replicas import read_conflicts

    _imported(dim, src, "n[1-2]")
    write(_replica(dim, "n1"), "etc/motd", "n1 was here\n", mtime=T1)
    write(src, "etc/motd", "new welcome\n", mtime=T1 + 1)
    touch_tree(src)
    dim.ok("image", "sync", "alpha", "--from", str(src))
    assert read_conflicts(dim.store, "alpha") == {"n1": ["etc/motd"]}
    # a change elsewhere leaves n1's motd as it was: still its own
    write(src, "etc/app/app.conf", "level=3\n", mtime=T1 + 2)
    touch_tree(src)
    dim.ok("image", "sync", "alpha", "--from", str(src))
    assert read_conflicts(dim.store, "alpha") == {"n1": ["etc/motd"]}
    # a forced change of the path reaches n1: no conflict any more
    write(src, "etc/motd", "newer\n", mtime=T1 + 3)
    touch_tree(src)
    dim.ok("image", "sync", "alpha", "--from", str(src), "--force")
    assert read_conflicts(dim.store, "alpha") == {}
    # made again, then a reset gives n1 a fresh replica: none
    write(_replica(dim, "n1"), "etc/motd", "mine again\n", mtime=T1 + 4)
    write(src, "etc/motd", "newest\n", mtime=T1 + 5)
    touch_tree(src)
    dim.ok("image", "sync", "alpha", "--from", str(src))
    assert read_conflicts(dim.store, "alpha") == {"n1": ["etc/motd"]}
    shown = json.loads(dim.ok("node", "status", "n1", "--json", "--nfs-pid-file", "self"))
    assert shown["nodes"][0]["conflicts"] == ["/etc/motd"]
    dim.ok("node", "reset", "n1", "--yes")
    assert read_conflicts(dim.store, "alpha") == {}
