"""``dim boot build``: parse, call :func:`dim.actions.images.boot_build`, print.

::

    dim boot build rhel9 --json
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from dim.actions import images
from dim.cli.context import Context, pass_context
from dim.cli.output import emit_json

if TYPE_CHECKING:
    from dim.boot.build import BuildResult


@click.group("boot")
def group() -> None:
    """Network-boot images: the kernel and initramfs of each image."""


@group.command("build")
@click.argument("image")
@click.option(
    "--kernel",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Use this kernel instead of the newest /boot/vmlinuz-* of the image.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def boot_build(ctx: Context, image: str, kernel: Path | None, as_json: bool) -> None:
    """Build (or reuse) the kernel and initramfs of IMAGE's latest version.

    The initramfs holds busybox, the image's own modules for NICs and NFS, and an /init that
    mounts the image's live tree read-only over NFS as the root. Nothing is rebuilt while the
    image version, the kernel, busybox and dim's /init are unchanged.

    Warnings go to stderr, on every build, reused or not: a module the image lacks, a kernel
    newer than the series dim is tested with, or NFS options its kernel and nfs-ganesha do
    not read the root with.
    """
    artifacts = images.boot_build(ctx, image, kernel)
    for warning in artifacts.warnings:  # on stderr, with --json too: in the JSON as well
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        emit_json(_record(artifacts))
        return
    what = "reused" if artifacts.reused else f"built in {artifacts.seconds:.1f} s"
    click.echo(
        f"{artifacts.image}: version {artifacts.version}, kernel {artifacts.kernel_version}, "
        f"{len(artifacts.modules)} modules, initrd {artifacts.initrd_bytes / 1e6:.1f} MB: {what}"
    )
    click.echo(f"  {artifacts.kernel}")
    click.echo(f"  {artifacts.initrd}")


def _record(artifacts: BuildResult) -> dict:
    return {
        "image": artifacts.image,
        "version": artifacts.version,
        "kernel_version": artifacts.kernel_version,
        "kernel": str(artifacts.kernel),
        "initrd": str(artifacts.initrd),
        "manifest": str(artifacts.manifest),
        "modules": list(artifacts.modules),
        "initrd_bytes": artifacts.initrd_bytes,
        "reused": artifacts.reused,
        "warnings": list(artifacts.warnings),
        "seconds": round(artifacts.seconds, 3),
    }
