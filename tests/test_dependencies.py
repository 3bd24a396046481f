"""Every package the code imports is declared where it is needed: the app's code (annotate/, judges/, manage.py,
docker/) in pyproject's [project] dependencies, the tests in those or the dev group, and the judge card runner's
modules in runner/pyproject.toml. A package that only arrives as another one's dependency can go away with the next
release of that one, so importing it needs its own line.

Import names are mapped to distributions with importlib.metadata.packages_distributions(), so the check reads the
installed environment: an import that no installed distribution provides fails too.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RUNNER = tomllib.loads((ROOT / "runner" / "pyproject.toml").read_text())
OWN = {"annotate", "judges", "tests"}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    """Distribution names of requirement strings ("celery[redis]>=5.7,<5.8" -> "celery")."""
    found = (re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement) for requirement in requirements)
    return {_normalize(match.group(1)) for match in found if match}


def _optional(node: ast.AST) -> bool:
    """A `try:` whose imports may fail (`except ImportError`)."""
    caught = {"ImportError", "ModuleNotFoundError"}
    return isinstance(node, ast.Try) and any(
        isinstance(handler.type, ast.Name) and handler.type.id in caught for handler in node.handlers
    )


def _nodes(tree: ast.AST, *, everything: bool) -> Iterator[ast.AST]:
    """The nodes of `tree`; unless `everything`, only those run when the module is imported, and not in a `try:`
    that allows an import to fail."""
    for node in ast.iter_child_nodes(tree):
        if not everything and (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or _optional(node)):
            continue
        yield node
        yield from _nodes(node, everything=everything)


def _imported(files: list[Path], *, everything: bool = True) -> dict[str, set[str]]:
    """Top-level modules imported by absolute imports in `files` (neither the standard library's nor ours), each
    with the files that import it."""
    modules: dict[str, set[str]] = {}
    for path in files:
        for node in _nodes(ast.parse(path.read_text(), filename=str(path)), everything=everything):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top not in sys.stdlib_module_names and top not in OWN and top != "__future__":
                    modules.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return modules


def _undeclared(files: list[Path], declared: set[str], *, everything: bool = True) -> list[str]:
    provided = packages_distributions()
    problems = []
    for module, where in sorted(_imported(files, everything=everything).items()):
        distributions = {_normalize(name) for name in provided.get(module, [])}
        if not distributions:
            problems.append(f"{module} (imported by {sorted(where)[0]}) is provided by no installed distribution")
        elif not distributions & declared:
            problems.append(f"{module}: declare {' or '.join(sorted(distributions))} (imported by {sorted(where)[0]})")
    return problems


def _python_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


RUNTIME = _names(PYPROJECT["project"]["dependencies"])
DEV = _names(PYPROJECT["dependency-groups"]["dev"])


def test_the_apps_code_imports_only_runtime_dependencies():
    files = [*_python_files("annotate", "judges", "docker"), ROOT / "manage.py"]
    assert _undeclared(files, RUNTIME) == []


def test_the_tests_import_only_declared_dependencies():
    assert _undeclared(_python_files("tests"), RUNTIME | DEV) == []


def test_the_card_runners_modules_import_only_the_runners_dependencies():
    project = RUNNER["project"]
    declared = _names(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        declared |= _names(extra)  # redis, for --redis-url: card.py asks for the [redis] extra when it is missing
    files = [ROOT / module for module in RUNNER["tool"]["annotate-runner"]["modules"]]
    # What the runner loads: the imports inside functions, and those allowed to fail, are the app's side of these
    # modules (card_key reads Django's settings; llm.py takes them when Django is there).
    assert _undeclared(files, declared, everything=False) == []


def test_the_check_finds_an_undeclared_import(tmp_path, monkeypatch):
    module = tmp_path / "uses_yaml.py"
    module.write_text(
        "import json\nfrom numpy import linalg\nfrom . import sibling\n\n"
        "try:\n    import yaml\nexcept ImportError:\n    yaml = None\n\n"
        "def later():\n    import yaml\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _undeclared([module], {"numpy"}) == ["yaml: declare pyyaml (imported by uses_yaml.py)"]
    assert _undeclared([module], {"numpy"}, everything=False) == []
    assert _undeclared([module], {"numpy", "pyyaml"}) == []
    assert _undeclared([module], set()) == [
        "numpy: declare numpy (imported by uses_yaml.py)",
        "yaml: declare pyyaml (imported by uses_yaml.py)",
    ]
