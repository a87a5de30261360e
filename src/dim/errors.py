"""The one error tree of dim.

::

    DimError                  anything dim reports to a user; exit status 1 by default
    ├── UsageError            bad input from the command line or a file: exit status 2
    │   ├── LayoutError       cluster.xml: carries file, line and the offending value
    │   └── StateError        a change the state DB refuses (duplicate MAC, unknown node)
    │       └── StateUnavailable   the state DB cannot be reached (server down, refused
    │                              connection): exit status 1, and dim serve answers from
    │                              the boot targets dim apply wrote
    ├── ImageError            an image operation failed; the store is left consistent
    │   └── ImageBusy         another dim command is changing the same image
    ├── BootError             an image lacks what a network boot needs (kernel, modules):
    │                         exit status 2
    ├── ApplyError            rendering, validation or reload of service files failed
    │   ├── RenderError       a template failed or a config cannot be expressed
    │   └── ValidationError   a daemon's own test mode refused a rendered file
    ├── PowerError            one node's BMC failed (timeout, refused login, garbage): carries
    │                         node, driver and kind; a fan-out reports it as that node's result
    └── LabError              the virtual cluster (`dim lab`) could not build a namespace,
                              start a daemon or reach a state it expects

Bad credentials files are a :class:`UsageError` (exit status 2) of their own,
:class:`CredentialsError`.

Errors carry data and an optional ``hint``; the CLI prints ``dim: error: <message>`` and
``hint: <hint>`` on stderr. Other libraries' exceptions are converted where they enter.
"""

from __future__ import annotations

from dim.names import shown


class DimError(Exception):
    """Base of every error dim reports to a user."""

    exit_status = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(DimError):
    """Invalid input: exit status 2."""

    exit_status = 2


class LayoutError(UsageError):
    """An error in cluster.xml, located by file and line."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        value: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.value = value
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        detail = f": {shown(value, 100)}" if value is not None else ""
        super().__init__(f"{where}{message}{detail}", hint=hint)


class StateError(UsageError):
    """A change the state database refuses."""


class StateUnavailable(StateError):
    """The state database cannot be reached: not the input's fault, so exit status 1."""

    exit_status = 1


class ImageError(DimError):
    """An image operation failed; what was done so far is consistent and can be re-run."""


class ImageBusy(ImageError):
    """Another dim command holds the image's lock."""


class BootError(DimError):
    """An image cannot be booted from the network: no kernel, no modules for it, a module that
    the initramfs needs is missing. The image is at fault, not the operation: exit status 2."""

    exit_status = 2


class ApplyError(DimError):
    """Applying service configuration failed."""


class RenderError(ApplyError):
    """A configuration could not be rendered."""


class ValidationError(ApplyError):
    """A daemon's own test mode refused a rendered configuration."""

    def __init__(self, service: str, path: str, output: str) -> None:
        first = next((ln for ln in output.splitlines() if ln.strip()), "no output")
        super().__init__(
            f"{service} refused the rendered {path}: {first.strip()}",
            hint="nothing was changed; fix cluster.xml or the template and apply again",
        )
        self.service = service
        self.path = path
        self.output = output


class CredentialsError(UsageError):
    """The credentials file is missing, unsafe (group- or world-readable) or malformed.

    Its messages never contain a secret: they name the file, the entry and the key.
    """


class PowerError(DimError):
    """One node's remote control failed; in a fan-out it is that node's result, not a crash.

    ``kind`` is a short word for grouping results: ``timeout``, ``unreachable``, ``auth``,
    ``protocol`` (garbage or half an answer), ``refused`` (the BMC said no), ``unsupported``,
    ``config`` (bad address or missing credentials). Messages never contain a password.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        node: str | None = None,
        driver: str | None = None,
        hint: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind
        self.node = node
        self.driver = driver
        self.retryable = retryable


class LabError(DimError):
    """The lab could not build a namespace, start a daemon or reach a state it expects."""
