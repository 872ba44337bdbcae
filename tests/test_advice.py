"""Every command a message advises must work: each backquoted `tune-app COMMAND ...` in the
package's message strings (docstrings aside) names a command that exists and only flags that
command takes. Commands a message builds at run time are checked by the tests that raise them
(tests/test_compare_input.py parses each with the real parser)."""

from __future__ import annotations

import argparse
import ast
import re
from collections.abc import Iterator
from pathlib import Path

import tune_app
from tune_app.cli.main import build_parser

PACKAGE = Path(tune_app.__file__).parent
FIELD = "\x00"  # stands for an f-string's {field}


def _messages(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """The string literals and f-strings of a module (an f-string's fields as FIELD), without
    docstrings."""
    docs: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            docs.add(id(body[0].value))
    parts: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(
                str(v.value) if isinstance(v, ast.Constant) else FIELD for v in node.values
            )
            parts |= {id(v) for v in node.values}
            yield node.lineno, text
    for node in ast.walk(tree):
        plain = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if plain and id(node) not in docs | parts:
            yield node.lineno, node.value


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def advised() -> list[tuple[str, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, text in _messages(ast.parse(path.read_text())):
            for command in re.findall(r"`tune-app ([^`]*)`", text):
                found.append((f"{path.relative_to(PACKAGE)}:{line}", command))
    return found


def test_every_advised_command_exists_and_takes_the_flags_it_is_given():
    checked, problems = 0, []
    for where, command in advised():
        words = command.split()
        top = parser = build_parser()
        while words and words[0] in _commands(parser):  # `data make-synthetic`, ...
            parser = _commands(parser)[words.pop(0)]
        if parser is top:
            if not command.startswith(FIELD) and not command.startswith("..."):
                problems.append(f"{where}: `tune-app {command}`: no such command")
            continue  # else built at run time or elided: checked where it is raised
        options = {o for action in parser._actions for o in action.option_strings}
        for word in words:
            flag = word.split("=", 1)[0]
            if flag.startswith("--") and FIELD not in flag and flag not in options:
                problems.append(f"{where}: `tune-app {command}`: {parser.prog} has no {flag}")
        checked += 1
    assert not problems, "\n".join(problems)
    assert checked >= 10  # the scan found the messages
