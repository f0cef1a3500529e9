"""The import contract: layers only point down and no package has an import cycle.

The contracts live in pyproject.toml (``[tool.importlinter]``); import-linter (grimp) reads
every import statement of a module, function-level (lazy) ones included, which the second test
checks on a throwaway package.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[1]


_EDGE = re.compile(r"^\s*-?\s*(\.?[\w.]+) -> (\.?[\w.]+)(?: \(|$)")
_CYCLE_HEADER = re.compile(r"No cycles are allowed in ([\w.]+)\.")


def run_lint_imports(config: Path, pythonpath: Path, cwd: Path) -> tuple[int, str]:
    """Run import-linter on ``config`` with ``pythonpath`` first on the path; (exit status, output)."""
    code = (
        "import sys\n"
        "from importlinter.cli import lint_imports\n"
        f"sys.exit(lint_imports(config_filename={str(config)!r}, no_cache=True, no_logo=True))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(pythonpath), os.environ.get("PYTHONPATH", "")]),
        "COLUMNS": "1000",
        "NO_COLOR": "1",
        "TERM": "dumb",
    }
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def broken_edges(output: str) -> set[tuple[str, str]]:
    """Every ``importer -> imported`` line in import-linter's report, with relative names resolved."""
    edges: set[tuple[str, str]] = set()
    package = ""
    in_broken = False
    for line in output.splitlines():
        if line.strip() == "Broken contracts":
            in_broken = True
        if not in_broken:
            continue
        header = _CYCLE_HEADER.search(line)
        if header:
            package = header.group(1)
            continue
        match = _EDGE.match(line)
        if match:
            a, b = (package + name if name.startswith(".") else name for name in match.groups())
            edges.add((a, b))
    return edges


def test_import_contract() -> None:
    status, output = run_lint_imports(ROOT / "pyproject.toml", ROOT / "src", ROOT)
    if status == 0:
        return
    listed = "\n".join(f"  {a} -> {b}" for a, b in sorted(broken_edges(output))) or "  (none parsed: read the report below)"
    pytest.fail(f"import contract broken:\n{listed}\n\n{output}", pytrace=False)


def test_contract_sees_function_level_imports(tmp_path: Path) -> None:
    """An upward import hidden inside a function breaks a layers contract, and a lazy cycle breaks acyclicity."""
    pkg = tmp_path / "src" / "toypkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "high.py").write_text("from toypkg import low\n")
    (pkg / "low.py").write_text(
        textwrap.dedent("""\
        def f():
            if True:
                from toypkg.high import g  # lazy and upward
            return g
        """)
    )
    sub = pkg / "sub"
    sub.mkdir()
    (sub / "__init__.py").write_text("")
    (sub / "a.py").write_text("from toypkg.sub import b\n")
    (sub / "b.py").write_text("def h():\n    import toypkg.sub.a\n")
    config = tmp_path / "setup.cfg"
    config.write_text(
        textwrap.dedent("""\
        [importlinter]
        root_package = toypkg

        [importlinter:contract:layers]
        name = layers
        type = layers
        containers = toypkg
        layers =
            high
            low

        [importlinter:contract:acyclic]
        name = acyclic
        type = acyclic_siblings
        ancestors = toypkg
        """)
    )
    status, output = run_lint_imports(config, tmp_path / "src", tmp_path)
    assert status != 0, output
    edges = broken_edges(output)
    assert ("toypkg.low", "toypkg.high") in edges, output
    assert {("toypkg.sub.a", "toypkg.sub.b"), ("toypkg.sub.b", "toypkg.sub.a")} & edges, output
