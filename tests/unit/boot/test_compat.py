"""Client-kernel compatibility of the NFS root: tested series, READ_PLUS against ganesha."""

from __future__ import annotations

import pytest

from dim.boot import compat
from dim.boot.compat import nfs_version, series, warnings

READ_PLUS_ON = "CONFIG_NFS_V4_2=y\nCONFIG_NFS_V4_2_READ_PLUS=y\nCONFIG_NFS_V4_1=y\n"
READ_PLUS_OFF = "CONFIG_NFS_V4_2=y\n# CONFIG_NFS_V4_2_READ_PLUS is not set\n"


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        ("6.12.117+deb13-amd64", (6, 12)),
        ("6.1.0-57-amd64", (6, 1)),
        ("7.3.4-amd64", (7, 3)),
        ("5.10.0-30-amd64", (5, 10)),
        ("6.12", (6, 12)),
        ("6.13-rc1", (6, 13)),
        ("6.2.0+", (6, 2)),
        ("v6.14.2-arch1-1", (6, 14)),
        ("generic", None),
        ("6", None),
        ("", None),
    ],
)
def test_series_is_the_major_and_minor_a_release_starts_with(
    release: str, expected: tuple[int, int] | None
) -> None:
    assert series(release) == expected


def test_series_compare_as_numbers_not_text() -> None:
    assert series("6.12.0") > series("6.9.0") > series("6.1.0")  # type: ignore[operator]
    assert compat.newer_than_tested("6.13.0-1-amd64")
    assert not compat.newer_than_tested("6.9.0-1-amd64")  # between two tested series
    assert not compat.newer_than_tested("6.12.117+deb13-amd64")


def test_the_version_asked_is_the_last_vers_or_nfsvers() -> None:
    assert nfs_version("actimeo=1") is None
    assert nfs_version("") is None
    assert nfs_version("actimeo=1,vers=4.2") == ("vers", "4.2")
    assert nfs_version("nfsvers=4.2,actimeo=1") == ("nfsvers", "4.2")
    assert nfs_version("vers=4.2,nfsvers=4.1") == ("nfsvers", "4.1")


def test_a_kernel_newer_than_tested_is_warned_about_naming_options_that_work() -> None:
    (line,) = warnings("deb14", "7.3.4-amd64", "actimeo=1", None, ganesha=False)
    assert line == (
        "image deb14: kernel 7.3.4-amd64 (series 7.3) is newer than the series dim is tested "
        'with (6.1, 6.12); if its nodes fail to mount or read their root, nfs-options="actimeo=1,'
        'vers=4.1" is known to work'
    )


@pytest.mark.parametrize(
    "release", ["6.1.0-57-amd64", "6.12.117+deb13-amd64", "5.10.0-30-amd64", "6.6.0", "odd"]
)
def test_tested_older_and_unreadable_kernels_get_no_warning(release: str) -> None:
    assert warnings("img", release, "actimeo=1", READ_PLUS_OFF, ganesha=True) == ()


@pytest.mark.parametrize("asked", ["vers=4.2", "nfsvers=4.2"])
def test_vers_4_2_with_read_plus_on_ganesha_is_warned_about(asked: str) -> None:
    (line,) = warnings(
        "deb13", "6.12.117+deb13-amd64", f"actimeo=1,{asked}", READ_PLUS_ON, ganesha=True
    )
    assert line == (
        f"image deb13: its nfs-options ask for {asked} and kernel 6.12.117+deb13-amd64 reads "
        "files with NFS READ_PLUS (CONFIG_NFS_V4_2_READ_PLUS=y), which nfs-ganesha before 6.2 "
        "answers with empty data: the node fails at switch_root with Input/output error; use "
        "vers=4.1 in nfs-options, or nfs-ganesha 6.2 or later"
    )


def test_read_plus_is_not_warned_about_for_the_kernel_nfs_server() -> None:
    assert warnings("i", "6.12.1", "vers=4.2", READ_PLUS_ON, ganesha=False) == ()


def test_read_plus_is_not_warned_about_when_the_options_ask_another_version() -> None:
    for options in ("actimeo=1", "actimeo=1,vers=4.1", "vers=3", "vers=4.2,vers=4.1"):
        assert warnings("i", "6.12.1", options, READ_PLUS_ON, ganesha=True) == (), options


def test_read_plus_is_not_warned_about_when_the_kernel_lacks_it_or_its_config() -> None:
    assert warnings("i", "6.1.0-57-amd64", "vers=4.2", READ_PLUS_OFF, ganesha=True) == ()
    assert warnings("i", "6.12.1", "vers=4.2", None, ganesha=True) == ()
    assert warnings("i", "6.12.1", "vers=4.2", "CONFIG_NFS_V4_2_READ_PLUS=m\n", ganesha=True) == ()


def test_a_new_kernel_with_read_plus_on_ganesha_gets_both_warnings() -> None:
    lines = warnings("new", "7.0.1-amd64", "vers=4.2", READ_PLUS_ON, ganesha=True)
    assert [line.split(": ", 1)[1].split(" ", 2)[:2] for line in lines] == [
        ["kernel", "7.0.1-amd64"],
        ["its", "nfs-options"],
    ]
