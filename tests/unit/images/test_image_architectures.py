"""Images know their architecture, read from their binaries, and nodes of another refuse them:
real trees of this machine's static busybox (x86-64) and of Debian's arm64 one, the arm64 one
changed by `dim image exec` through qemu-user."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dim.cli import main
from tests.conftest import require
from tests.unit.test_architectures import HOST_BUSYBOX, arm64_busybox, usr_merged_tree

LAYOUT = """<?xml version="1.0"?>
<cluster name="mixed" domain="mixed.example">
  <network name="boot" subnet="10.30.0.0/24"/>
  <server name="srv" address="10.30.0.2" dhcp="dnsmasq" nfs="ganesha"/>
  <image name="amd"><persist path="/etc"/></image>
  <image name="arm"><persist path="/etc"/></image>
  <group name="x86" nodes="x[1-2]" image="amd">
    <interface network="boot" ip="10.30.0.{10+i}"/>
  </group>
  <group name="grace" nodes="a[1-2]" image="{arm_image}" arch="{arch}">
    <interface network="boot" ip="10.30.0.{20+i}"/>
  </group>
</cluster>
"""


class Site:
    def __init__(self, folder: Path, capsys) -> None:
        self.folder = folder
        self.capsys = capsys
        self.config = folder / "cluster.xml"
        self.layout()

    def layout(self, arm_image: str = "arm", arch: str = "arm64") -> None:
        text = LAYOUT.replace("{arm_image}", arm_image).replace("{arch}", arch)
        self.config.write_text(text)

    def dim(self, *args: str) -> tuple[int, str, str]:
        options = ["--config", str(self.config), "--state", str(self.folder / "state")]
        status = main([*options, *args])
        out, err = self.capsys.readouterr()
        return status, out, err

    def ok(self, *args: str) -> str:
        status, out, err = self.dim(*args)
        assert status == 0, err
        return out


@pytest.fixture
def site(tmp_path, capsys) -> Site:
    require(HOST_BUSYBOX.exists(), "busybox-static is not installed")
    site = Site(tmp_path, capsys)
    amd = usr_merged_tree(tmp_path / "amd", HOST_BUSYBOX)
    site.ok("image", "import", "amd", "--from", str(amd))
    arm = usr_merged_tree(tmp_path / "arm", arm64_busybox())
    site.ok("image", "import", "arm", "--from", str(arm))
    return site


def test_an_image_shows_the_architecture_of_its_binaries(site):
    listed = {r["name"]: r["arch"] for r in json.loads(site.ok("image", "list", "--json"))}
    assert listed == {"amd": "x86_64", "arm": "aarch64"}
    assert site.ok("image", "show", "arm").startswith("arm: aarch64, versions 1,")
    header = site.ok("image", "list").splitlines()[0].split()
    assert header[:2] == ["IMAGE", "ARCH"]


def test_a_groups_arch_is_its_nodes_and_defaults_to_x86_64(site):
    nodes = {n["name"]: n["arch"] for n in json.loads(site.ok("node", "list", "--json"))}
    assert nodes == {"x1": "x86_64", "x2": "x86_64", "a1": "aarch64", "a2": "aarch64"}


def test_an_unknown_architecture_is_a_layout_error_with_its_line(site):
    site.layout(arch="sparc64")
    status, _, err = site.dim("layout", "check")
    assert status != 0
    assert "cluster.xml:10: unknown architecture" in err and "sparc64" in err, err


def test_an_aarch64_node_declared_secure_boot_is_a_layout_error_naming_shimx64(site):
    text = site.config.read_text()
    site.config.write_text(text.replace('arch="arm64">', 'arch="arm64" secure-boot="yes">'))
    status, _, err = site.dim("layout", "check")
    assert status != 0 and "cluster.xml:10: " in err and "shimx64.efi" in err, err
    site.config.write_text(
        text.replace(
            "  </group>\n</cluster>",
            '    <node name="a2" secure-boot="yes"/>\n  </group>\n</cluster>',
        )
    )
    status, _, err = site.dim("layout", "check")
    assert status != 0 and "cluster.xml:12: " in err and "aarch64 nodes cannot run" in err, err


def test_exec_in_an_arm64_image_runs_its_binaries_through_qemu_user_and_keeps_its_arch(site):
    require(
        Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists(),
        "qemu-user-static's qemu-aarch64 is not registered with binfmt_misc",
    )
    site.ok("image", "exec", "arm", "--", "/bin/sh", "-c", "uname -m > /etc/machine-seen")
    versions = json.loads(site.ok("image", "versions", "arm", "--json"))
    assert [v["arch"] for v in versions] == ["aarch64", "aarch64"]
    live = site.folder / "state" / "images" / "arm" / "live" / "etc" / "machine-seen"
    assert live.read_text() == "aarch64\n"


def test_a_node_given_an_image_of_another_architecture_is_refused_naming_both(site):
    before = site.ok("node", "list", "--json")
    for command in (("node", "set", "a[1-2]", "--image", "amd"), ("node", "switch", "a1", "amd")):
        status, _, err = site.dim(*command)
        assert status != 0
        assert "a[1-2]" in err or "a1" in err
        assert "aarch64" in err and "x86_64" in err and "amd" in err, err
    assert site.ok("node", "list", "--json") == before  # nothing recorded
    assert not (site.folder / "state" / "nodes" / "a1" / "amd").exists()  # no replica made


def test_apply_refuses_a_layout_that_gives_a_group_an_image_of_another_arch(site, tmp_path):
    site.layout(arm_image="amd")
    root = tmp_path / "root"
    root.mkdir()
    status, _, err = site.dim("apply", "--root", str(root))
    assert status != 0
    assert "a[1-2] (group grace, aarch64) cannot boot image amd" in err, err
    assert not any(root.iterdir())  # nothing written


def test_a_matching_architecture_is_accepted(site):
    site.ok("node", "set", "a1", "--image", "arm")
    site.ok("node", "set", "x1", "--image", "amd")
