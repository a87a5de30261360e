"""The initramfs's /init, its pure parts run by the host's busybox sh.

init.sh only defines functions when it is not pid 1, so a test sources it in a busybox sh and
calls one function; nothing is mounted, nothing outside the test's folder is touched.
"""

from __future__ import annotations

import re
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from dim.boot.arguments import node_arguments
from tests.conftest import require_binary

INIT = resources.files("dim.boot").joinpath("init.sh")

CMDLINE = (
    "BOOT_IMAGE=vmlinuz initrd=initrd.img console=ttyS0 dim.server=10.77.0.1 dim.image=tiny "
    "dim.root=10.77.0.1:/var/lib/dim/images/tiny/live dim.rw=10.77.0.1:/var/lib/dim/nodes "
    "dim.nfsopts=actimeo=1,timeo=30 dim.persist=/etc,/var,/root dim.volatile=/tmp,/var/tmp "
    "dim.node=node01 dim.mac=52:54:00:AA:BB:01 quiet"
)


def sh(script: str, *, cwd: Path | None = None) -> str:
    """Source init.sh in busybox sh, run ``script``; its stdout (stderr fails the test)."""
    busybox = require_binary("busybox", "busybox-static")
    with resources.as_file(INIT) as init:
        result = subprocess.run(
            [busybox, "sh", "-c", f'. "{init}"\n{script}'],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=cwd,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def parsed(cmdline: str, *names: str) -> list[str]:
    show = "; ".join(f'echo "${name}"' for name in names)
    return sh(f"dim_parse_cmdline '{cmdline}'; {show}").splitlines()


def test_every_dim_argument_is_read() -> None:
    names = ("dim_server", "dim_image", "dim_root", "dim_rw", "dim_nfsopts", "dim_node")
    assert parsed(CMDLINE, *names) == [
        "10.77.0.1",
        "tiny",
        "10.77.0.1:/var/lib/dim/images/tiny/live",
        "10.77.0.1:/var/lib/dim/nodes",
        "actimeo=1,timeo=30",
        "node01",
    ]


def test_path_lists_become_words_and_the_mac_lower_case() -> None:
    assert parsed(CMDLINE, "dim_persist", "dim_volatile", "dim_mac", "dim_init") == [
        "/etc /var /root",
        "/tmp /var/tmp",
        "52:54:00:aa:bb:01",
        "/sbin/init",
    ]


def test_defaults_server_from_root_and_actimeo() -> None:
    cmdline = "dim.root=10.0.0.2:/srv/live"
    assert parsed(cmdline, "dim_server", "dim_nfsopts", "dim_node", "dim_persist") == [
        "10.0.0.2",
        "actimeo=1",
        "",
        "",
    ]


def test_pxelinux_bootif_names_the_mac_when_dim_mac_is_absent() -> None:
    assert parsed("dim.root=s:/r BOOTIF=01-52-54-00-AA-BB-02", "dim_mac") == ["52:54:00:aa:bb:02"]
    both = "dim.root=s:/r BOOTIF=01-52-54-00-AA-BB-02 dim.mac=52:54:00:aa:bb:03"
    assert parsed(both, "dim_mac") == ["52:54:00:aa:bb:03"]


def test_globs_in_arguments_are_not_expanded(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    out = sh(
        "dim_parse_cmdline 'dim.root=s:/r dim.persist=/*'; echo \"$dim_persist\"", cwd=tmp_path
    )
    assert out == "/*\n"


def test_the_node_arguments_dim_renders_are_those_init_reads() -> None:
    cmdline = "dim.root=s:/r " + node_arguments("node07", "52:54:00:AA:BB:07")
    assert parsed(cmdline, "dim_node", "dim_mac") == ["node07", "52:54:00:aa:bb:07"]
    with pytest.raises(ValueError):
        node_arguments("node 07")
    with pytest.raises(ValueError):
        node_arguments("node07", "52:54:00")


@pytest.mark.parametrize(
    ("cmdline", "problem"),
    [
        ("dim.image=tiny", "dim.root is missing: give dim.root=SERVER:/PATH"),
        ("dim.root=/var/lib/dim", "dim.root=/var/lib/dim is not SERVER:/PATH"),
        ("dim.root=s:/r dim.persist=/etc dim.image=t", "dim.persist needs dim.rw=SERVER:/PATH"),
        ("dim.root=s:/r dim.persist=/etc dim.rw=s:/n", "dim.persist needs dim.image=NAME"),
        ("dim.root=s:/r dim.volatile=tmp", "tmp is not an absolute path"),
    ],
)
def test_missing_or_malformed_arguments_are_named(cmdline: str, problem: str) -> None:
    out = sh(f"dim_parse_cmdline '{cmdline}'; dim_check_args || echo FAILED")
    assert out.startswith(problem)
    assert out.endswith("FAILED\n")


def test_complete_arguments_pass_the_check() -> None:
    assert sh(f"dim_parse_cmdline '{CMDLINE}'; dim_check_args && echo OK") == "OK\n"


def fake_net(tmp_path: Path) -> Path:
    """A /sys/class/net with lo, a bonding file, a tunnel and two Ethernet NICs."""
    net = tmp_path / "net"
    for name, address, kind in [
        ("eth0", "52:54:00:00:00:0a", "1"),
        ("eth1", "52:54:00:00:00:0b", "1"),
        ("lo", "00:00:00:00:00:00", "772"),
        ("sit0", "00:00:00:00", "776"),
    ]:
        (net / name).mkdir(parents=True)
        (net / name / "address").write_text(address + "\n")
        (net / name / "type").write_text(kind + "\n")
    (net / "bonding_masters").write_text("\n")
    return net


def test_the_nic_with_the_wanted_mac_is_picked(tmp_path: Path) -> None:
    net = fake_net(tmp_path)
    assert sh(f"dim_pick_iface 52:54:00:00:00:0b {net}") == "eth1\n"


def test_without_a_mac_the_first_ethernet_nic_is_picked(tmp_path: Path) -> None:
    net = fake_net(tmp_path)
    assert sh(f"dim_pick_iface '' {net}") == "eth0\n"


def test_an_absent_mac_picks_nothing(tmp_path: Path) -> None:
    net = fake_net(tmp_path)
    assert sh(f"dim_pick_iface 52:54:00:00:00:99 {net} || echo NONE") == "NONE\n"


@pytest.mark.parametrize(
    ("mode", "extra", "expected"),
    [
        (
            "ro",
            "actimeo=1",
            "nfs4 addr=10.77.0.1,vers=4.1,proto=tcp,clientaddr=10.77.0.11,actimeo=1,ro",
        ),
        ("rw", "", "nfs4 addr=10.77.0.1,vers=4.1,proto=tcp,clientaddr=10.77.0.11,rw"),
        (
            "ro",
            "vers=4.2,actimeo=3",
            "nfs4 addr=10.77.0.1,proto=tcp,clientaddr=10.77.0.11,vers=4.2,actimeo=3,ro",
        ),
        ("ro", "vers=3", "nfs addr=10.77.0.1,proto=tcp,nolock,vers=3,ro"),
        ("rw", "nfsvers=3,lock,proto=udp", "nfs addr=10.77.0.1,nfsvers=3,lock,proto=udp,rw"),
    ],
)
def test_nfs_mount_options_are_the_kernel_text_options_version_4_1_unless_asked(
    mode: str, extra: str, expected: str
) -> None:
    script = (
        f'echo "$(dim_nfs_type "{extra}") $(dim_nfs_options {mode} 10.77.0.1 10.77.0.11 "{extra}")"'
    )
    assert sh(script) == expected + "\n"


def test_writable_paths_put_parents_before_children_and_leave_run_alone() -> None:
    script = "dim_persist='/var /etc'; dim_volatile='/var/tmp /run /tmp/'; dim_writable_paths"
    assert sh(script).splitlines() == [
        "/etc persist",
        "/tmp volatile",
        "/var persist",
        "/var/tmp volatile",
    ]


MODULES = """\
required kernel/net/sunrpc/sunrpc.ko
required kernel/fs/nfs/nfs.ko
optional kernel/drivers/virtio/virtio_pci.ko
optional kernel/drivers/net/virtio_net.ko
optional kernel/drivers/net/ethernet/intel/e1000/e1000.ko
optional kernel/drivers/net/ethernet/mellanox/mlx5/core/mlx5_core.ko
optional kernel/fs/ext4/ext4.ko
required kernel/fs/nfs/nfsv4.ko
"""


def load_modules(tmp_path: Path, nic_driver: str, mac: str) -> list[str]:
    """dim_load_modules with an insmod that records its module and, for ``nic_driver``,
    makes the NIC appear (52:54:00:00:00:01) as the kernel would."""
    sys = tmp_path / "sys"
    (sys / "class" / "net" / "lo").mkdir(parents=True)
    (sys / "module" / "sunrpc").mkdir(parents=True)  # already there: built in
    (tmp_path / "modules").write_text(MODULES)
    eth0 = sys / "class" / "net" / "eth0"
    script = f"""
dim_errors={tmp_path}/errors
dim_mac={mac}
insmod() {{
    echo "insmod ${{1#/lib/modules/v/}}"
    case "$1" in
    */{nic_driver}.ko)
        mkdir {eth0} && echo 52:54:00:00:00:01 >{eth0}/address && echo 1 >{eth0}/type ;;
    esac
}}
dim_load_modules {tmp_path}/modules /lib/modules/v {sys}
"""
    return sh(script).splitlines()


def test_optional_modules_after_the_boot_nic_appears_are_left_out(tmp_path: Path) -> None:
    assert load_modules(tmp_path, "virtio_net", "52:54:00:00:00:01") == [
        "insmod kernel/fs/nfs/nfs.ko",
        "insmod kernel/drivers/virtio/virtio_pci.ko",
        "insmod kernel/drivers/net/virtio_net.ko",
        "insmod kernel/fs/nfs/nfsv4.ko",  # required: loaded whatever comes before
        "dim:   4 modules loaded, 3 optional ones left out (the boot NIC is there)",
    ]


def test_modules_load_until_the_nic_of_the_boot_mac_is_there(tmp_path: Path) -> None:
    assert load_modules(tmp_path, "e1000", "")[-3:] == [
        "insmod kernel/drivers/net/ethernet/intel/e1000/e1000.ko",
        "insmod kernel/fs/nfs/nfsv4.ko",
        "dim:   5 modules loaded, 2 optional ones left out (the boot NIC is there)",
    ]
    # a NIC with another MAC than the boot one: every module is loaded
    other = load_modules(tmp_path / "other", "virtio_net", "52:54:00:00:00:99")
    assert other[-1] == "dim:   7 modules loaded"


def test_init_sh_parses_in_busybox_sh() -> None:
    busybox = require_binary("busybox", "busybox-static")
    with resources.as_file(INIT) as init:
        result = subprocess.run(
            [busybox, "sh", "-n", str(init)], capture_output=True, text=True, check=False
        )
    assert result.returncode == 0, result.stderr


def test_step_9_checks_the_init_before_it_gives_up_the_initramfs() -> None:
    main = INIT.read_text().split("\nmain() {", 1)[1]
    check = main.index('problem=$(dim_check_init /newroot "$dim_init") || fail "$problem"')
    assert check < main.index("mount --move") < main.index("exec switch_root")


SYSTEMD = b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 8


def image_root(tmp_path: Path) -> Path:
    """A merged-usr image: /bin, /sbin and /lib link into usr/, /sbin/init to systemd."""
    root = tmp_path / "newroot"
    for folder in ("usr/bin", "usr/sbin", "usr/lib/systemd"):
        (root / folder).mkdir(parents=True)
    for name in ("bin", "sbin", "lib"):
        (root / name).symlink_to(f"usr/{name}")
    systemd = root / "usr/lib/systemd/systemd"
    systemd.write_bytes(SYSTEMD)
    systemd.chmod(0o755)
    (root / "usr/sbin/init").symlink_to("/lib/systemd/systemd")
    return root


def check_init(root: Path, path: str = "/sbin/init", *, prelude: str = "") -> str:
    """What dim_check_init says of ``path`` in ``root``, and FAILED if it fails."""
    return sh(
        f"dim_errors={root.parent}/errors\n{prelude}\ndim_check_init {root} {path} || echo FAILED"
    )


def script(root: Path, path: str, text: str) -> None:
    (root / path).write_text(text)
    (root / path).chmod(0o755)


@pytest.mark.parametrize(
    ("path", "resolved"),
    [
        ("/sbin/init", "usr/lib/systemd/systemd"),  # /sbin -> usr/sbin, init -> /lib/..., /lib
        ("/lib/../sbin/./init", "usr/lib/systemd/systemd"),  # .. after a link: from its target
        ("/usr/sbin/relative", "usr/lib/systemd/systemd"),
        ("/usr/sbin/host", "etc/hostname"),  # absolute: the new root's /etc, not the host's
        ("/sbin/absent", "usr/sbin/absent"),
        ("/", ""),
    ],
)
def test_links_resolve_inside_the_new_root(tmp_path: Path, path: str, resolved: str) -> None:
    root = image_root(tmp_path)
    (root / "usr/sbin/relative").symlink_to("../lib/systemd/systemd")
    (root / "usr/sbin/host").symlink_to("/etc/hostname")
    assert sh(f"dim_resolve_in {root}/ {path}") == f"{root}/{resolved}\n"


def test_a_good_init_through_merged_usr_links_passes(tmp_path: Path) -> None:
    assert check_init(image_root(tmp_path)) == ""


def test_a_script_init_whose_interpreter_is_there_passes(tmp_path: Path) -> None:
    root = image_root(tmp_path)
    script(root, "usr/bin/sh", "#!/bin/sh\n# a stand-in, read only\n")  # itself a script: fine
    script(root, "usr/lib/dim-init", "#!/bin/sh -e\nexec /lib/systemd/systemd\n")
    assert check_init(root, "/lib/dim-init") == ""


def test_a_link_loop_fails_after_40_links(tmp_path: Path) -> None:
    root = image_root(tmp_path)
    (root / "usr/sbin/init").unlink()
    (root / "usr/sbin/init").symlink_to("/sbin/init")
    assert check_init(root) == (
        "/sbin/init: more than 40 symbolic links, a loop (/usr/sbin/init -> /sbin/init)\nFAILED\n"
    )
    (root / "usr/lib/x").symlink_to("y")
    (root / "usr/lib/y").symlink_to("x")
    assert check_init(root, "/lib/x/init").startswith(
        "/lib/x/init: more than 40 symbolic links, a loop (/usr/lib/"
    )


def test_a_missing_init_fails_naming_where_its_links_led(tmp_path: Path) -> None:
    root = image_root(tmp_path)
    (root / "usr/lib/systemd/systemd").unlink()
    assert check_init(root) == "/sbin/init (/usr/lib/systemd/systemd): no such file\nFAILED\n"
    assert check_init(root, "/init") == "/init: no such file\nFAILED\n"


def test_a_folder_is_not_an_init(tmp_path: Path) -> None:
    root = image_root(tmp_path)
    assert check_init(root, "/lib/systemd") == (
        "/lib/systemd (/usr/lib/systemd): a folder, not a program\nFAILED\n"
    )


def test_a_file_that_is_not_executable_is_not_an_init(tmp_path: Path) -> None:
    root = image_root(tmp_path)
    (root / "usr/lib/systemd/systemd").chmod(0o644)
    assert check_init(root) == "/sbin/init (/usr/lib/systemd/systemd): not executable\nFAILED\n"


def test_a_script_whose_interpreter_is_missing_fails_naming_it(tmp_path: Path) -> None:
    root = image_root(tmp_path)
    script(root, "usr/lib/dim-init", "#! /bin/bash -e\nexec /lib/systemd/systemd\n")
    assert check_init(root, "/lib/dim-init") == (
        "/lib/dim-init (/usr/lib/dim-init): #!/bin/bash: /bin/bash (/usr/bin/bash): no such file"
        "\nFAILED\n"
    )
    script(root, "usr/lib/dim-init", "#!\nexit 0\n")
    assert check_init(root, "/lib/dim-init") == (
        "/lib/dim-init (/usr/lib/dim-init): a script (#!) that names no interpreter\nFAILED\n"
    )


def test_an_init_that_fails_to_read_is_named_with_the_error(tmp_path: Path) -> None:
    # busybox wc when read(2) fails, as over NFSv4.2 READ_PLUS from nfs-ganesha < 6.2
    wc = 'wc() { echo "wc: standard input: Input/output error" >&2; echo 0; return 1; }'
    assert check_init(image_root(tmp_path), prelude=wc) == (
        "reading /sbin/init (/usr/lib/systemd/systemd): Input/output error\nFAILED\n"
    )


def test_an_init_that_reads_short_is_named_with_the_bytes_read(tmp_path: Path) -> None:
    wc = "wc() { cat >/dev/null; echo 0; }"  # the data READ_PLUS brought: none
    assert check_init(image_root(tmp_path), prelude=wc) == (
        f"reading /sbin/init (/usr/lib/systemd/systemd): read 0 of {len(SYSTEMD)} bytes\nFAILED\n"
    )


def dynamic_program() -> tuple[Path, str]:
    """A dynamic ELF program of the host and the interpreter its PT_INTERP names."""
    program = Path("/usr/bin/env").resolve()
    found = subprocess.run(
        ["readelf", "-l", str(program)], capture_output=True, text=True, check=False
    )
    interp = re.search(r"Requesting program interpreter: (\S+)\]", found.stdout)
    if interp is None:
        pytest.skip("readelf (binutils) missing, or /usr/bin/env is not dynamic")
    return program, interp.group(1)


def test_the_elf_interpreter_is_read_from_the_program_header() -> None:
    program, interp = dynamic_program()
    assert sh(f"dim_elf_interp {program}") == interp
    busybox = require_binary("busybox", "busybox-static")
    assert sh(f"dim_elf_interp {busybox} && echo static") == "static\n"
    assert sh("dim_elf_interp /etc/passwd || echo not-elf") == "not-elf\n"


def test_a_dynamic_init_whose_elf_interpreter_is_missing_fails_naming_it(tmp_path: Path) -> None:
    program, interp = dynamic_program()
    root = image_root(tmp_path)
    (root / "usr/lib/systemd/systemd").write_bytes(program.read_bytes())
    assert check_init(root) == (
        f"/sbin/init (/usr/lib/systemd/systemd): its ELF interpreter: {interp}: no such file\n"
        "FAILED\n"
    )
    loader = root / interp.lstrip("/")
    loader.parent.mkdir(parents=True, exist_ok=True)
    loader.write_bytes(b"\x7fELF stand-in")
    loader.chmod(0o755)
    assert check_init(root) == ""
