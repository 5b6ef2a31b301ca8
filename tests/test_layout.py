"""The package's shape: data flows one way, the CLI sits on top, and the light commands stay light.

The import graph is read from the source with ``ast`` (every ``import`` statement, also those inside
functions, which run as soon as the function does), so a new circle or an arrow back up fails here
before it confuses a reader.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nnunet_robustness"
# The shim template is copied into nnU-Net's folder; it imports our trainers from there.
NOT_MODULES = {"nnunet_robustness.shim.template"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (resolved to the deepest existing module)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if name in NOT_MODULES:
            continue
        targets: set[str] = set()
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative import
                    base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                candidates = [f"{module}.{alias.name}" for alias in node.names] + [module]
            else:
                continue
            for candidate in candidates:
                if candidate in modules and candidate != name:
                    targets.add(candidate)
                    break
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_real_imports():
    graph = import_graph()
    assert "nnunet_robustness.conditions" in graph["nnunet_robustness.runner.runner"]
    assert "nnunet_robustness.runner.manifest" in graph["nnunet_robustness.metrics.inputs"]
    # a function-level import counts
    assert "nnunet_robustness.reports.trust" in graph["nnunet_robustness.cli.rate"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_the_ground_floor_imports_nothing_above_it():
    """``conditions``, ``modalities``, ``io`` and ``errors`` are used by every stage, so they may use only
    each other."""
    graph = import_graph()
    ground = {"nnunet_robustness.conditions", "nnunet_robustness.modalities", "nnunet_robustness.io",
              "nnunet_robustness.errors"}
    for module in ground:
        assert graph[module] <= ground - {module}, module


def test_nothing_outside_the_cli_imports_the_cli():
    offenders = [f"{module} -> {target}" for module, targets in import_graph().items()
                 if not module.startswith("nnunet_robustness.cli") for target in targets
                 if target.startswith("nnunet_robustness.cli")]
    assert offenders == []


def _imported_after(code: str) -> set[str]:
    result = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
                            capture_output=True, text=True, timeout=300, check=True)
    return set(result.stdout.split())


def test_cli_parser_imports_neither_torch_nor_nnunet():
    """``nnunet-robust --help`` and ``--version`` build the whole parser; they must not wait for torch."""
    loaded = _imported_after("import nnunet_robustness.cli as cli; cli.build_parser()")
    assert "torch" not in loaded and "nnunetv2" not in loaded


@pytest.mark.parametrize("code", [
    "from nnunet_robustness.cli import eval as command",
    "from nnunet_robustness.analysis.evaluation import evaluate; from nnunet_robustness.reports.evaluation import "
    "write_report",
    "from nnunet_robustness.trust import calibrate, rate; from nnunet_robustness.reports.trust import write_report",
    "from nnunet_robustness.analysis.recommend import recommend",
    "from nnunet_robustness.analysis.card import build_cards; from nnunet_robustness.reports.card import html_card",
])
def test_eval_and_trust_do_not_import_torch(code):
    assert "torch" not in _imported_after(code)


def test_tests_share_helpers_only_through_tests_helpers():
    """A test module imports no other test module: shared code lives in tests/helpers/ (or a package's
    own non-test helper module), so moving or deleting one test never breaks another."""
    tests = Path(__file__).resolve().parent
    offenders = []
    for path in tests.rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tests.") \
                    and node.module.rsplit(".", 1)[-1].startswith("test_"):
                offenders.append(f"{path.relative_to(tests)} imports {node.module}")
    assert offenders == []
