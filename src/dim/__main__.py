"""``python -m dim`` and the ``dim`` console script."""

import sys

from dim import __version__


def entry_point() -> None:
    # `dim --version` answers before click is imported: click is most of a 0.1 s start
    if sys.argv[1:] == ["--version"]:
        print(f"dim, version {__version__}")
        sys.exit(0)
    from dim.cli import entry_point as run

    run()


if __name__ == "__main__":
    entry_point()
