"""Function-level samples: each function or method of a module on its own, as users ask for code.

A sample is the import statements the function's names need, then (for a method) the header of
its class, then the function with its decorators, signature, docstring and body, as written in
the file. Extracted with `ast`; files that do not parse give none.
"""

from __future__ import annotations

import ast

MIN_LINES, MAX_LINES = 3, 150


def _bound_names(node: ast.Import | ast.ImportFrom) -> set[str]:
    return {(alias.asname or alias.name).split(".")[0] for alias in node.names}


def _used_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _segment(lines: list[str], node: ast.AST) -> str:
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    return "".join(lines[first - 1 : node.end_lineno])


def function_samples(text: str) -> list[str]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    lines = text.splitlines(keepends=True)
    imports = [(node, _bound_names(node)) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]

    def sample(function: ast.FunctionDef | ast.AsyncFunctionDef, header: str = "") -> str | None:
        if not MIN_LINES <= function.end_lineno - function.lineno + 1 <= MAX_LINES:
            return None
        used = _used_names(function)
        needed = "".join(_segment(lines, node) for node, names in imports if names & used)
        return (needed + "\n\n" if needed else "") + header + _segment(lines, function)

    samples = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            samples.append(sample(node))
        elif isinstance(node, ast.ClassDef) and node.body:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            header = "".join(lines[first - 1 : node.body[0].lineno - 1])
            samples += [
                sample(item, header) for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
            ]
    return [s for s in samples if s]
