"""Every public function of tune_app/cli/ and tune_app/training/ says what it takes, gives and
raises (Google style): a new undocumented one fails here.

Public: a module-level function, or a method of a module-level class, whose name does not start
with "_" (dunder methods and `__init__` excepted). Its docstring must have
- `Args:` naming each parameter (bar self/cls) as `name:` (`*args` as `args:`),
- `Returns:` (or `Yields:`) unless it returns None, and
- `Raises:` naming each exception class the body raises itself (`raise X(...)` outside a nested
  function; a bare `raise` re-raises and needs none).
A property needs a docstring only (it documents an attribute, not a call).
Checked on the source with `ast`, so nothing is imported.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tune_app"
CHECKED = ["cli", "training"]

Function = ast.FunctionDef | ast.AsyncFunctionDef


def public_functions(folder: Path) -> Iterator[tuple[str, Function, bool]]:
    """(qualified name, node, is a property) of every public function in `folder`'s modules."""
    for file in sorted(folder.glob("*.py")):
        tree = ast.parse(file.read_text())
        prefix = f"{folder.name}/{file.name}"
        for node in tree.body:
            if isinstance(node, Function) and not node.name.startswith("_"):
                yield f"{prefix}:{node.name}", node, False
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                for item in node.body:
                    if isinstance(item, Function) and not item.name.startswith("_"):
                        is_property = any(
                            (isinstance(d, ast.Name) and d.id in ("property", "cached_property"))
                            or (isinstance(d, ast.Attribute) and d.attr in ("setter", "getter"))
                            for d in item.decorator_list
                        )
                        yield f"{prefix}:{node.name}.{item.name}", item, is_property


def _section(doc: str, name: str) -> str | None:
    """The text of a Google-style section (`Args:` up to the next section), None if absent."""
    match = re.search(rf"^\s*{name}:\s*$", doc, re.MULTILINE)
    if match is None:
        return None
    rest = doc[match.end() :]
    following = re.search(
        r"^\s*(Args|Returns|Yields|Raises|Example|Examples|Note):\s*$", rest, re.M
    )
    return rest[: following.start()] if following else rest


def _own_nodes(function: Function) -> Iterator[ast.AST]:
    """The nodes of `function`'s body, not those of functions or classes nested in it."""
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            stack.extend(ast.iter_child_nodes(node))


def _raised(function: Function) -> set[str]:
    names = set()
    for node in _own_nodes(function):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name) and target.id[:1].isupper():
                names.add(target.id)
            elif isinstance(target, ast.Attribute):
                names.add(target.attr)
    return names


def _returns_value(function: Function) -> bool:
    returns = function.returns
    if returns is None:  # unannotated: look for a `return value`
        return any(isinstance(n, ast.Return) and n.value is not None for n in _own_nodes(function))
    return not (isinstance(returns, ast.Constant) and returns.value is None)


def problems(function: Function, is_property: bool) -> list[str]:
    """What the function's docstring lacks (empty: it is complete)."""
    doc = ast.get_docstring(function)
    if not doc:
        return ["no docstring"]
    if is_property:
        return []
    found = []
    arguments = function.args
    names = [
        a.arg
        for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)
        if a.arg not in ("self", "cls")
    ]
    names += [a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None]
    if names:
        section = _section(doc, "Args")
        if section is None:
            found.append("no Args:")
        else:
            missing = [n for n in names if not re.search(rf"^\s*\**{n}\b.*:", section, re.M)]
            if missing:
                found.append(f"Args: lacks {', '.join(missing)}")
    if _returns_value(function) and not (_section(doc, "Returns") or _section(doc, "Yields")):
        found.append("no Returns:")
    raised = _raised(function)
    if raised:
        section = _section(doc, "Raises")
        if section is None:
            found.append(f"no Raises: (raises {', '.join(sorted(raised))})")
        else:
            missing = [n for n in sorted(raised) if n not in section]
            if missing:
                found.append(f"Raises: lacks {', '.join(missing)}")
    return found


def count(package: str) -> tuple[int, int]:
    """(public functions, those whose docstring is complete) in `tune_app/<package>/`."""
    checked = list(public_functions(PACKAGE / package))
    complete = sum(not problems(node, prop) for _, node, prop in checked)
    return len(checked), complete


CASES = [
    pytest.param(name, node, prop, id=name)
    for package in CHECKED
    for name, node, prop in public_functions(PACKAGE / package)
]


@pytest.mark.parametrize(("name", "node", "is_property"), CASES)
def test_public_function_documents_args_returns_raises(name, node, is_property):
    assert not problems(node, is_property), f"{name}: {'; '.join(problems(node, is_property))}"


def test_the_checker_finds_what_a_docstring_lacks():
    source = '''
def bare(x): return x
def partial(x: int, *, y: int = 0) -> int:
    """Add.

    Args:
        x: a number.

    Returns:
        x + y.
    """
    if x < 0:
        raise ValueError("x")
    return x + y
def whole(x: int) -> None:
    """Check.

    Args:
        x: a number.

    Raises:
        ValueError: x is negative.
    """
    if x < 0:
        raise ValueError("x")
'''
    bare, partial, whole = ast.parse(source).body
    assert problems(bare, False) == ["no docstring"]  # type: ignore[arg-type]
    assert problems(partial, False) == [  # type: ignore[arg-type]
        "Args: lacks y",
        "no Raises: (raises ValueError)",
    ]
    assert problems(whole, False) == []  # type: ignore[arg-type]
    assert len(CASES) > 50  # the walk finds the packages' functions
