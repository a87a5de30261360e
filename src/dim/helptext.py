"""``dim --help`` without click: the root help page, laid out byte for byte as click lays it out.

Importing click takes longer than the 0.1 s that issue 14 allows a help page, and the page
needs nothing of click but its layout: the usage line, the root group's text, its options and
the command families (all in :mod:`dim.commands`), wrapped to the terminal's width. This module
redoes click's ``HelpFormatter`` (click/formatting.py) for that page alone, on the standard
library's ``textwrap`` as click does::

    print(root_help())          # what `dim --help` prints, at this terminal's width
    root_help(width=78)         # at a given width

tests/unit/test_cli_startup.py compares it with click's own rendering at every width from 40
to 130 columns: a change to click's layout or to the root group fails there, not on a screen.
"""

from __future__ import annotations

import shutil
import textwrap

from dim.commands import FAMILIES, MAX_CONTENT_WIDTH, ROOT_HELP, ROOT_OPTIONS

USAGE = "Usage: dim "
ARGUMENTS = "[OPTIONS] COMMAND [ARGS]..."
INDENT = 2  # click's indent per section level
COLUMN_MAX = 30  # click's widest first column in a definition list
COLUMN_SPACING = 2


def terminal_width() -> int:
    """The width click formats for: the terminal's columns (``COLUMNS`` first), capped, less 2."""
    return max(min(shutil.get_terminal_size().columns, MAX_CONTENT_WIDTH) - 2, 50)


def root_help(width: int | None = None) -> str:
    """The page ``dim --help`` prints (without its final newline), as click makes it."""
    width = terminal_width() if width is None else width
    page = [_wrap(ARGUMENTS, width, USAGE, " " * len(USAGE)), "\n"]
    indent = " " * INDENT
    page += ["\n", _wrap(ROOT_HELP, width, indent, indent, paragraphs=True), "\n"]
    page += ["\nOptions:\n", _definitions(ROOT_OPTIONS, width)]
    # as dim.cli.lazy.LazyGroup.format_commands: the widest name and 3 spacings leave the rest
    limit = width - 6 - max(len(name) for name in FAMILIES)
    commands = [(name, _short_help(FAMILIES[name].summary, limit)) for name in sorted(FAMILIES)]
    page += ["\nCommands:\n", _definitions(commands, width)]
    return "".join(page).rstrip("\n")


class _Wrapper(textwrap.TextWrapper):
    """click's wrapper (click/_textwrap.py) for text without colours: it cuts a word longer
    than the line at the width, never at a hyphen as textwrap would."""

    def _handle_long_word(
        self, reversed_chunks: list[str], cur_line: list[str], cur_len: int, width: int
    ) -> None:
        space_left = max(width - cur_len, 1)
        if self.break_long_words:
            last = reversed_chunks[-1]
            cur_line.append(last[:space_left])
            reversed_chunks[-1] = last[space_left:]
        elif not cur_line:
            cur_line.append(reversed_chunks.pop())


def _wrap(text: str, width: int, first: str = "", rest: str = "", paragraphs: bool = False) -> str:
    """click.formatting.wrap_text: the text filled; with ``paragraphs``, each paragraph filled
    and indented as its first line was, one opened by a line of ``\\b`` kept as it is."""
    text = text.expandtabs()
    if not paragraphs:
        return _Wrapper(width, first, rest, replace_whitespace=False).fill(text)
    filled = []
    for extra, raw, paragraph in _paragraphs(text):
        head, tail = first + " " * extra, rest + " " * extra
        if raw:
            kept = paragraph.splitlines()
            filled.append("\n".join((tail if i else head) + k for i, k in enumerate(kept)))
        else:
            filled.append(_Wrapper(width, head, tail, replace_whitespace=False).fill(paragraph))
    return "\n\n".join(filled)


def _paragraphs(text: str) -> list[tuple[int, bool, str]]:
    """(indent, kept as is, text) of each paragraph, as click.formatting.wrap_text splits them."""
    found: list[tuple[int, bool, str]] = []
    lines: list[str] = []
    indent: int | None = None

    def end_paragraph() -> None:
        if lines:
            raw = lines[0].strip() == "\b"
            found.append((indent or 0, raw, "\n".join(lines[1:]) if raw else " ".join(lines)))
            lines.clear()

    for line in text.splitlines():
        if not line:
            end_paragraph()
            indent = None
            continue
        if indent is None:  # only a paragraph's first line is dedented, as click does
            indent = len(line) - len(line.lstrip())
            line = line.lstrip()
        lines.append(line)
    end_paragraph()
    return found


def _definitions(rows: list[tuple[str, str]] | tuple[tuple[str, str], ...], width: int) -> str:
    """click's HelpFormatter.write_dl, one section level in: terms, then their wrapped text."""
    column = min(max(len(term) for term, _ in rows), COLUMN_MAX) + COLUMN_SPACING
    out = []
    for term, text in rows:
        out.append(" " * INDENT + term)
        if not text:
            out.append("\n")
            continue
        if len(term) <= column - COLUMN_SPACING:
            out.append(" " * (column - len(term)))
        else:
            out.append("\n" + " " * (column + INDENT))
        lines = _wrap(text, max(width - column - 2, 10), paragraphs=True).splitlines() or [""]
        out.append(lines[0] + "\n")
        out += [" " * (column + INDENT) + line + "\n" for line in lines[1:]]
    return "".join(out)


def _short_help(text: str, limit: int) -> str:
    """click.utils._make_default_short_help: the first sentence, shortened to ``limit``."""
    words = text.partition("\n\n")[0].split()
    if words and words[0] == "\b":
        words = words[1:]
    for i, word in enumerate(words):
        # a period ends the sentence unless a lowercase word follows ("vs. …")
        if word.endswith(".") and (i == len(words) - 1 or not words[i + 1][0].islower()):
            words = words[: i + 1]
            break
    short = " ".join(words)
    if len(short) <= limit:
        return short
    if limit < 3:
        return "..."
    return textwrap.shorten(short, limit, placeholder="...", break_on_hyphens=False)
