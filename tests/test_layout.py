"""The layout rules of the package, read from the source files (nothing is imported):

* tests mirror the package: ``dualgap/X/y.py`` is tested in ``tests/X/test_y.py`` (a leading
  underscore of the module's name is dropped; ``__init__.py`` and ``__main__.py`` are exempt
  while they hold no functions or classes beyond a lazy-import ``__getattr__``/``__dir__``);
* no source module over 500 lines;
* no import cycle among the modules' top-level imports (imports inside functions and under
  ``if TYPE_CHECKING:`` are lazy and do not count);
* the core (``dualgap/`` outside ``dualgap/llm/``) names ``llm`` nowhere (no import, attribute,
  string or comment spells the lower-case name; prose may say "the LLM pipeline"), except the
  command line (``dualgap/cli.py`` and ``dualgap/commands/``);
* the lazy-import tables of the package ``__init__`` files name modules and attributes that
  exist.

Each checker is also run on a small made-up tree where it must fail, so that none of them can
pass by construction.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "dualgap"
TESTS = REPO / "tests"

#: the largest source module allowed, in lines
MAX_LINES = 500
#: the core modules that may name ``llm``: the command line, which registers ``dualgap llm``
LLM_ALLOWED = ("cli.py", "commands/")
#: functions an ``__init__.py`` may define and stay exempt from the mirror rule (lazy imports)
LAZY_HOOKS = {"__getattr__", "__dir__"}


def _modules(package: Path) -> list[Path]:
    return sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _holds_logic(path: Path) -> bool:
    """Whether a package ``__init__``/``__main__`` defines anything beyond the lazy hooks (or,
    for ``__main__``, runs anything at all beyond imports)."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name not in LAZY_HOOKS:
                return True
        elif path.name == "__main__.py" and not isinstance(
                node, (ast.Import, ast.ImportFrom, ast.Expr, ast.Assign)):
            return True
    return False


def mirrored_test(path: Path, package: Path, tests: Path) -> Path:
    """The test module of source module ``path``: ``dualgap/X/_y.py`` -> ``tests/X/test_y.py``
    (``__init__.py`` -> ``tests/X/test_init.py``)."""
    rel = path.relative_to(package)
    stem = rel.stem.strip("_") if rel.stem.startswith("__") else rel.stem.lstrip("_")
    return tests.joinpath(*rel.parts[:-1], f"test_{stem}.py")


def missing_test_modules(package: Path, tests: Path) -> list[str]:
    """``source -> expected test module`` for each module without its mirrored test module."""
    out = []
    for path in _modules(package):
        if path.name in ("__init__.py", "__main__.py") and not _holds_logic(path):
            continue
        want = mirrored_test(path, package, tests)
        if not want.is_file():
            out.append(f"{path.relative_to(package.parent)} -> {want.relative_to(tests.parent)}")
    return out


def clashing_test_folders(tests: Path) -> list[str]:
    """Test modules whose basename appears in several folders where one of them is imported
    under its bare name (a folder without ``__init__.py``): pytest's default import mode then
    refuses the second one."""
    bare: dict[str, list[Path]] = {}
    for p in sorted(tests.rglob("test_*.py")):
        if not (p.parent / "__init__.py").exists():
            bare.setdefault(p.name, []).append(p)
    return [f"{name}: {', '.join(str(p.relative_to(tests.parent)) for p in paths)}"
            for name, paths in bare.items() if len(paths) > 1]


def long_modules(package: Path, limit: int = MAX_LINES) -> list[str]:
    out = []
    for path in _modules(package):
        n = len(path.read_text().splitlines())
        if n > limit:
            out.append(f"{path.relative_to(package.parent)}: {n} lines (at most {limit})")
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _top_level_imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """The package modules ``name`` imports when it is imported (its module-level imports,
    also inside ``if``/``try`` blocks, except ``if TYPE_CHECKING:``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()

    def walk(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                if not _is_type_checking(node.test):
                    walk(node.body)
                walk(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody,
                              *(h.body for h in node.handlers)):
                    walk(block)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                for a in node.names:
                    if f"{src}.{a.name}" in modules:
                        out.add(f"{src}.{a.name}")
                    elif src in modules:
                        out.add(src)

    walk(ast.parse(path.read_text()).body)
    out.discard(name)
    return out


def import_cycles(package: Path) -> list[list[str]]:
    """The strongly connected components (more than one module) of the top-level import graph
    (Tarjan's algorithm), each sorted."""
    paths = {_module_name(p, package): p for p in _modules(package)}
    graph = {m: _top_level_imports(p, m, set(paths)) for m, p in paths.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def core_names_llm(package: Path) -> list[str]:
    """``file:line`` of every lower-case ``llm`` that does not continue a word (``dualgap.llm``,
    ``.llm``, ``llm_runs``, ``"llm"``; code, strings and comments alike) in a core module
    outside :data:`LLM_ALLOWED`."""
    out = []
    word = re.compile(r"(?<![A-Za-z0-9])llm")
    for path in _modules(package):
        rel = path.relative_to(package).as_posix()
        if rel.startswith("llm/") or rel.startswith(LLM_ALLOWED):
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if word.search(line):
                out.append(f"{path.relative_to(package.parent)}:{i}: {line.strip()}")
    return out


def _lazy_tables(tree: ast.Module) -> dict[str, ast.expr]:
    return {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name) and t.id.startswith("_")
            and isinstance(node.value, (ast.Set, ast.Dict))}


def _defines(path: Path, name: str) -> bool:
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == name:
                return True
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
        elif isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name
                                                      for a in node.names):
            return True
    return False


def _submodule(folder: Path, name: str) -> Path | None:
    for cand in (folder / f"{name}.py", folder / name / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def broken_lazy_names(package: Path) -> list[str]:
    """Entries of the lazy-import tables of ``__init__`` files with a ``__getattr__`` (a set of
    submodule names, or a dict ``attribute -> submodule``) that name no such submodule, or an
    attribute the submodule does not define."""
    out = []
    for init in sorted(package.rglob("__init__.py")):
        tree = ast.parse(init.read_text())
        if not any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body):
            continue
        here = init.parent

        for table, value in _lazy_tables(tree).items():
            where = f"{init.relative_to(package.parent)} {table}"
            if isinstance(value, ast.Set):
                for elt in value.elts:
                    if isinstance(elt, ast.Constant) and _submodule(here, elt.value) is None:
                        out.append(f"{where}: no submodule {elt.value!r}")
            else:
                for k, v in zip(value.keys, value.values, strict=True):
                    if not (isinstance(k, ast.Constant) and isinstance(v, ast.Constant)):
                        continue
                    target = _submodule(here, v.value)
                    if target is None:
                        out.append(f"{where}: {k.value!r} -> no submodule {v.value!r}")
                    elif not _defines(target, k.value):
                        out.append(f"{where}: {k.value!r} is not defined in {v.value!r}")
    return out


# ------------------------------------------------------------------ the rules on this repository
def test_every_module_has_its_mirrored_test_module():
    missing = missing_test_modules(PACKAGE, TESTS)
    assert not missing, (f"{len(missing)} module(s) without a test module at the mirrored path:\n"
                         + "\n".join(missing))


def test_test_modules_of_the_same_name_live_in_packages():
    clashes = clashing_test_folders(TESTS)
    assert not clashes, ("test modules of the same name need an __init__.py in their folders:\n"
                         + "\n".join(clashes))


def test_no_module_is_over_500_lines():
    assert not (long := long_modules(PACKAGE)), "\n".join(long)


def test_no_import_cycles():
    assert not (cycles := import_cycles(PACKAGE)), "\n".join(" <-> ".join(c) for c in cycles)


def test_the_core_names_no_llm_outside_the_command_line():
    assert not (hits := core_names_llm(PACKAGE)), "\n".join(hits)


def test_lazy_import_tables_name_what_exists():
    assert not (bad := broken_lazy_names(PACKAGE)), "\n".join(bad)


# ------------------------------------------------------------------ each checker can fail
def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def made_up(tmp_path):
    """A package ``pkg`` breaking every rule once, and its tests."""
    _write(tmp_path, {
        "pkg/__init__.py": "import importlib\n_LAZY = {'a', 'gone'}\n"
                           "_EXPORTS = {'f': 'a', 'nothing': 'a'}\n"
                           "def __getattr__(name):\n    return importlib.import_module(name)\n",
        "pkg/a.py": "from pkg import b\ndef f():\n    return 1\n",
        "pkg/b.py": "from pkg.a import f\nfrom . import c\n",
        "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
                    "def g():\n    from pkg import a\n",
        "pkg/_private.py": "x = 1\n" * (MAX_LINES + 1),
        "pkg/sub/__init__.py": "def helper():\n    return 2\n",
        "pkg/sub/d.py": "# the LLM pipeline reads this\nfrom pkg.llm_runs import x\n",
        "pkg/cli.py": "# dualgap llm ...\n",
        "pkg/llm/e.py": "# llm\n",
        "tests/test_a.py": "", "tests/test_private.py": "", "tests/sub/test_d.py": "",
        "tests/other/test_a.py": "", "tests/llm/test_e.py": "", "tests/test_cli.py": "",
    })
    return tmp_path / "pkg", tmp_path / "tests"


def test_mirror_checker_names_each_missing_module(made_up):
    package, tests = made_up
    assert missing_test_modules(package, tests) == [
        "pkg/b.py -> tests/test_b.py", "pkg/c.py -> tests/test_c.py",
        "pkg/sub/__init__.py -> tests/sub/test_init.py"]
    assert mirrored_test(package / "_private.py", package, tests) == tests / "test_private.py"
    assert clashing_test_folders(tests) == [
        "test_a.py: tests/other/test_a.py, tests/test_a.py"]
    (tests / "other" / "__init__.py").write_text("")
    assert clashing_test_folders(tests) == []


def test_line_cycle_and_llm_checkers_fail_on_the_made_up_tree(made_up):
    package, _ = made_up
    assert long_modules(package) == [f"pkg/_private.py: {MAX_LINES + 1} lines (at most 500)"]
    # a <-> b through top-level imports; c's imports are lazy or for type checkers only
    assert import_cycles(package) == [["pkg.a", "pkg.b"]]
    assert core_names_llm(package) == ["pkg/sub/d.py:2: from pkg.llm_runs import x"]
    assert broken_lazy_names(package) == ["pkg/__init__.py _LAZY: no submodule 'gone'",
                                          "pkg/__init__.py _EXPORTS: 'nothing' is not defined "
                                          "in 'a'"]
