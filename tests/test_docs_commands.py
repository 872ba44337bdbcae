"""Every `tune-app` command line in README.md and docs/*.md is one the real parser takes: each
command exists, each flag it uses appears in that command's `--help`, and a complete command
line from a code block parses as written (values against the flags' types and choices). A
renamed or removed flag fails here, with the page and line that use it."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from tune_app.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_ENDS = {"|", "||", "&&", ";", ">", ">>", "2>", "&"}


@dataclass(frozen=True)
class Use:
    """A `tune-app` command line as a page writes it: whole (a code block's line) or a mention
    in the text (inline code, perhaps without its positional arguments)."""

    page: str
    line: int
    argv: tuple[str, ...]
    whole: bool

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: tune-app {shlex.join(self.argv)}"


def _argv(text: str) -> list[tuple[str, ...]]:
    """The arguments after each `tune-app` in a shell line (inside quotes too: `ray exec ...
    "tune-app search ..."`), up to a pipe or the like."""
    try:
        tokens = shlex.split(text, comments=True)
    except ValueError:  # an unbalanced quote in prose: not a command
        return []
    found = []
    for index, token in enumerate(tokens):
        if " " in token and "tune-app " in token:
            found += _argv(token)
        elif token.endswith("tune-app") and token.split("/")[-1] == "tune-app":
            argv = []
            for part in tokens[index + 1 :]:
                if part in SHELL_ENDS:
                    break
                argv.append(part)
            if argv:
                found.append(tuple(argv))
    return found


def uses() -> list[Use]:
    """Every `tune-app` command line of the pages."""
    found = []
    for page in PAGES:
        text = page.read_text()
        name = str(page.relative_to(ROOT))
        in_block = False
        pending, start = "", 0
        for number, line in enumerate(text.splitlines(), start=1):
            if line.lstrip().startswith("```"):
                in_block = not in_block
                continue
            if in_block:
                pending, start = (pending + " " + line, start) if pending else (line, number)
                if pending.rstrip().endswith("\\"):  # a command continued on the next line
                    pending = pending.rstrip()[:-1]
                    continue
                found += [Use(name, start, argv, True) for argv in _argv(pending)]
                pending = ""
        # inline code, which may wrap across lines in the text (not in code blocks)
        prose = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
        for match in re.finditer(r"`([^`]*tune-app [^`]*)`", prose):
            number = prose.count("\n", 0, match.start()) + 1
            for argv in _argv(match.group(1).replace("\n", " ")):
                found.append(Use(name, number, argv, False))
    return found


def _run(argv: list[str]) -> tuple[int, str]:
    """`tune-app ARGV` through the real parser only (no handler runs): exit code and output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            return int(exc.code or 0), out.getvalue() + err.getvalue()
    return 0, out.getvalue()


@cache
def help_of(path: tuple[str, ...]) -> str | None:
    """`tune-app PATH --help`, or None when PATH is not a command."""
    code, text = _run([*path, "--help"])
    usage = " ".join(text.split())
    return text if code == 0 and usage.startswith(f"usage: tune-app {' '.join(path)} ") else None


def command_path(argv: tuple[str, ...]) -> tuple[str, ...]:
    """The command (and subcommand: `data inspect`, `plan show`) that `argv` starts with."""
    path = argv[:1]
    if len(argv) > 1 and not argv[1].startswith("-") and help_of(argv[:2]) is not None:
        path = argv[:2]
    return path


def flags_of(argv: tuple[str, ...]) -> list[str]:
    return [
        token.split("=", 1)[0] for token in argv if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", token)
    ]


USES = uses()


def test_the_pages_hold_the_commands_of_every_job():
    commands = {use.argv[0] for use in USES}
    assert {"baseline", "search", "best", "certify", "compare", "report"} <= commands
    assert sum(use.whole for use in USES) > 30


@pytest.mark.parametrize("use", USES, ids=str)
def test_each_command_line_is_one_the_parser_takes(use: Use):
    path = command_path(use.argv)
    text = help_of(path)
    assert text is not None, f"{use}: `tune-app {' '.join(path)}` is not a command"
    unknown = [
        flag
        for flag in flags_of(use.argv)
        if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text)
    ]
    assert not unknown, f"{use}: not in `tune-app {' '.join(path)} --help`: {unknown}"
    if use.whole:
        code, said = _run(list(use.argv))
        assert code == 0, f"{use}: {said.strip().splitlines()[-1]}"


def test_a_renamed_flag_fails_here():
    """The check itself: a flag the parser does not have, a command that does not exist, and
    a value outside a flag's choices are each caught."""
    (renamed,) = _argv(".venv/bin/tune-app search --data d.parquet --populace 8")
    assert "--populace" in flags_of(renamed)
    text = help_of(command_path(renamed))
    assert text is not None and "--population" in text and "--populace" not in text
    assert help_of(("serch",)) is None
    assert _run(["search", "--scheduler", "pb3"])[0] == 2
    assert _argv('ray exec c.yaml "tune-app search --address auto" | tee x') == [
        ("search", "--address", "auto")
    ]


def test_every_page_is_linked_from_the_readme_and_every_local_link_resolves():
    readme = (ROOT / "README.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name != "README.md":
            assert f"(docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"
    for page in [*PAGES, ROOT / "ARCHITECTURE.md"]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name} links {target}: no such file"
