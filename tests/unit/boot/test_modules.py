"""modules.dep resolution: load order, built-ins, soft dependencies, dim's policy."""

from __future__ import annotations

import pytest

from dim.boot.modules import (
    OPTIONAL,
    REQUIRED,
    WARN,
    load_order,
    module_name,
    modules_dep,
    parse,
    select,
)
from dim.errors import BootError

# A kernel like Debian 12's, cut down: NFS over sunrpc, virtio, e1000, ext4 with a soft
# dependency on crc32c through an alias, af_packet built in.
DEP = """\
kernel/net/sunrpc/sunrpc.ko:
kernel/fs/netfs/netfs.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/nfs_common/grace.ko:
kernel/fs/lockd/lockd.ko: kernel/fs/nfs_common/grace.ko kernel/net/sunrpc/sunrpc.ko
kernel/fs/nfs/nfs.ko: kernel/fs/lockd/lockd.ko kernel/fs/nfs_common/grace.ko \
kernel/net/sunrpc/sunrpc.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/fs/nfs_common/nfs_acl.ko: kernel/net/sunrpc/sunrpc.ko
kernel/fs/nfs/nfsv3.ko: kernel/fs/nfs_common/nfs_acl.ko kernel/fs/nfs/nfs.ko \
kernel/fs/lockd/lockd.ko kernel/fs/nfs_common/grace.ko kernel/net/sunrpc/sunrpc.ko \
kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/net/dns_resolver/dns_resolver.ko:
kernel/fs/nfs/nfsv4.ko: kernel/net/dns_resolver/dns_resolver.ko kernel/fs/nfs/nfs.ko \
kernel/fs/lockd/lockd.ko kernel/fs/nfs_common/grace.ko kernel/net/sunrpc/sunrpc.ko \
kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko \
kernel/drivers/virtio/virtio_ring.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko \
kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/ethernet/intel/e1000/e1000.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/crypto/crc32c_generic.ko:
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/overlayfs/overlay.ko:
kernel/drivers/block/loop.ko:
"""
BUILTIN = "kernel/net/packet/af_packet.ko\nkernel/net/unix/unix.ko\n"
ALIAS = """\
alias crypto-crc32c crc32c_intel
alias crypto-crc32c crc32c_generic
alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_pci
"""
SOFTDEP = (
    "# Soft dependencies extracted from modules themselves.\nsoftdep ext4 pre: crypto-crc32c\n"
)


def index(dep: str = DEP, builtin: str = BUILTIN):
    return parse(dep, builtin, ALIAS, SOFTDEP)


def test_dependencies_load_first_in_the_order_modprobe_uses() -> None:
    assert load_order(index(), ["nfsv4"]) == [
        "netfs",
        "fscache",
        "sunrpc",
        "grace",
        "lockd",
        "nfs",
        "dns_resolver",
        "nfsv4",
    ]


def test_each_module_is_loaded_once_across_several_wanted_ones() -> None:
    order = load_order(index(), ["nfsv3", "nfsv4", "virtio_net", "virtio_pci"])
    assert len(order) == len(set(order))
    assert order.index("nfs_acl") < order.index("nfsv3")
    assert order.index("virtio_ring") < order.index("virtio") < order.index("virtio_net")


def test_soft_dependencies_come_first_through_their_alias() -> None:
    order = load_order(index(), ["ext4"])
    assert order[:2] == ["crc32c_intel", "crc32c_generic"]
    assert order[-1] == "ext4"


def test_builtin_and_unknown_names_are_left_out_of_the_order() -> None:
    assert load_order(index(), ["af_packet", "no_such_module", "loop"]) == ["loop"]


def test_names_with_dashes_and_compressed_files_are_the_kernel_names() -> None:
    assert module_name("kernel/arch/x86/crypto/crc32c-intel.ko.zst") == "crc32c_intel"
    assert module_name("kernel/fs/nfs/nfs.ko.xz") == "nfs"
    assert load_order(index(), ["crc32c-intel"]) == ["crc32c_intel"]


def test_absolute_paths_of_old_modules_dep_files_are_made_relative() -> None:
    old = parse("/lib/modules/2.6.32/kernel/fs/nfs/nfs.ko: /lib/modules/2.6.32/kernel/sunrpc.ko\n")
    assert old.paths == {"nfs": "kernel/fs/nfs/nfs.ko"}
    assert old.deps == {"nfs": ("sunrpc",)}


def test_a_line_without_colon_is_an_error_naming_the_line() -> None:
    with pytest.raises(BootError, match="modules.dep line 2"):
        parse("kernel/a.ko:\nkernel/b.ko kernel/a.ko\n")


def test_selection_carries_nfs_nics_and_writable_layers_and_marks_what_is_required() -> None:
    selection = select(index(), image="tiny")
    names = [m.name for m in selection.modules]
    for name in ("nfsv3", "nfsv4", "virtio_pci", "virtio_net", "e1000", "ext4", "overlay", "loop"):
        assert name in names
    required = {m.name for m in selection.modules if m.required}
    assert {"sunrpc", "nfs", "nfsv3", "nfsv4", "lockd", "dns_resolver"} <= required
    assert not required & {"virtio_net", "e1000", "ext4", "crc32c_intel"}
    assert selection.builtin == ("af_packet",)
    assert selection.warnings == ()
    assert {"e1000e", "igb", "ixgbe", "mlx5_core"} <= set(selection.absent)


def test_a_missing_nfs_module_is_an_error_naming_it_and_the_image() -> None:
    without = "\n".join(ln for ln in DEP.splitlines() if not ln.startswith("kernel/fs/nfs/nfsv4"))
    with pytest.raises(BootError) as caught:
        select(index(without), image="tiny")
    assert "image tiny" in caught.value.message
    assert "nfsv4" in caught.value.message
    assert caught.value.exit_status == 2


def test_af_packet_neither_built_in_nor_a_module_is_an_error() -> None:
    with pytest.raises(BootError, match="af_packet"):
        select(index(builtin=""), image="tiny")


def test_absent_virtio_net_is_a_warning_and_absent_mellanox_says_nothing() -> None:
    without = "\n".join(ln for ln in DEP.splitlines() if "virtio_net" not in ln)
    selection = select(index(without), image="tiny")
    assert len(selection.warnings) == 1
    assert "image tiny has no virtio_net module" in selection.warnings[0]
    assert "virtio_net" in selection.absent and "mlx5_core" in selection.absent


def test_policy_is_a_parameter() -> None:
    wanted = (("loop", REQUIRED), ("overlay", WARN), ("igb", OPTIONAL))
    selection = select(index(), image="tiny", wanted=wanted)
    assert [(m.name, m.required) for m in selection.modules] == [
        ("loop", True),
        ("overlay", False),
    ]


def test_modules_dep_of_the_initramfs_names_the_uncompressed_files_it_carries() -> None:
    compressed = parse(
        "kernel/a.ko.xz: kernel/b.ko.zst kernel/c.ko.xz\nkernel/b.ko.zst:\nkernel/c.ko.xz:\n"
    )
    carried = select(compressed, image="x", wanted=(("a", REQUIRED),)).modules
    assert [m.path for m in carried] == ["kernel/c.ko.xz", "kernel/b.ko.zst", "kernel/a.ko.xz"]
    assert modules_dep(compressed, carried) == (
        "kernel/a.ko: kernel/b.ko kernel/c.ko\nkernel/b.ko:\nkernel/c.ko:\n"
    )
