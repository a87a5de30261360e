"""Jinja2's side of rendering: the environment that loads dim's templates and the
administrator's overrides, and renders those that have no compiled function.

:meth:`dim.services.rendering.RenderContext.render` renders a template by its function of
:mod:`dim.services.compiled` when it has one for the exact text, and through :func:`render`
here otherwise; only then is Jinja2 imported (some 50 ms of a command's start: a one-node
``dim apply`` renders nothing else)::

    text = render(Path("/etc/dim/templates"), "boot.ipxe.j2", {"header": "…", "boot_url": url})

Errors of Jinja2 become :class:`~dim.errors.RenderError` naming the template (and its line).
"""

from __future__ import annotations

import contextlib
from functools import cache
from pathlib import Path

import jinja2
from jinja2.compiler import CodeGenerator

from dim.errors import RenderError
from dim.names import shown

UNPRINTABLE_HINT = (
    "nothing was written; a template override that joins values with a newline must write "
    "one {{ value }} per line instead (see the package's kea-dhcp4.conf.j2)"
)


def render(template_dir: Path | None, template: str, values: dict[str, object]) -> str:
    """``template`` (the override in ``template_dir`` first, then the package's own) rendered
    with ``values``."""
    try:
        return _environment(template_dir).get_template(template).render(**values)
    except jinja2.TemplateError as exc:
        where = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
        raise RenderError(
            f"template {template}{where}: {exc.message or exc}",
            hint=UNPRINTABLE_HINT
            if isinstance(exc, UnprintableValue)
            else "check the template override next to cluster.xml, if any",
        ) from exc


class UnprintableValue(jinja2.TemplateRuntimeError):
    """A ``{{ value }}`` holding a newline: it would start a line of its own."""


class _CheckedOutput(CodeGenerator):
    """Compiles ``{{ x }}`` to ``(t if "\\n" not in (t := str(x)) else refuse(t))``.

    The same contract for newlines as an ``Environment(finalize=…)`` that raises, at a fraction
    of its cost: a finalize is one Python call per value, 1.4 million of them at 100,000 nodes
    (20 % more instructions in ``render_all``, 8 % for this), where ``in`` is one ``memchr``.
    Other control characters are found in the whole file at once (:meth:`RenderContext.render`).
    """

    def _output_child_pre(self, node, frame, finalize) -> None:
        self.write('(_dim_text if "\\n" not in (_dim_text := ')
        super()._output_child_pre(node, frame, finalize)

    def _output_child_post(self, node, frame, finalize) -> None:
        super()._output_child_post(node, frame, finalize)
        self.write(") else environment.refuse_value(_dim_text))")


class _Environment(jinja2.Environment):
    code_generator_class = _CheckedOutput

    @staticmethod
    def refuse_value(text: str) -> str:
        raise UnprintableValue(
            f"a value holds a newline, which would start a line of its own: {shown(text)}"
        )


class _BytecodeCache(jinja2.FileSystemBytecodeCache):
    """Jinja2's compiled templates kept between commands (in its own per-user folder under
    the temporary folder, mode 0700): compiling the ten templates a one-node ``dim apply``
    renders costs more than rendering them. Jinja2 checks each entry against the template's
    source and Python's version; the file names add this module's size and modification
    time and Jinja2's version, since :class:`_CheckedOutput` changes the code compiled. A
    cache that cannot be written is no cache, never an error."""

    def __init__(self) -> None:
        st = Path(__file__).stat()
        stamp = f"{jinja2.__version__}-{st.st_size}-{st.st_mtime_ns}"
        super().__init__(pattern=f"dim-{stamp}-%s.cache")

    def dump_bytecode(self, bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    try:
        return _BytecodeCache()
    except (OSError, RuntimeError):  # no safe temporary folder
        return None


@cache
def _environment(template_dir: Path | None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if template_dir is not None and template_dir.is_dir():
        loaders.append(jinja2.FileSystemLoader(str(template_dir)))
    loaders.append(jinja2.PackageLoader("dim", "templates"))
    return _Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        bytecode_cache=_bytecode_cache(),
    )
