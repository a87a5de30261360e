"""``python -m dim``: the ``dim`` command, for a child process of this very interpreter."""

from dim.cli import entry_point

entry_point()
