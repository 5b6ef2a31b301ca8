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
    assert "nnunet_robustness.records.run_manifest" in graph["nnunet_robustness.metrics.inputs"]
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


def _imports_into(graph: dict[str, set[str]], importers: tuple[str, ...], imported: str) -> list[str]:
    """``module -> target`` for every import from a module under one of ``importers`` (package prefixes)
    into a module under ``imported``."""
    return sorted(f"{module} -> {target}" for module, targets in graph.items()
                  if module.startswith(importers) for target in targets
                  if target == imported or target.startswith(f"{imported}."))


def test_records_sit_at_the_bottom():
    """The files that cross a stage are read and written through ``records/``, which every stage may import:
    it may import only the ground floor, never a stage, so that reading a record never loads its writer."""
    graph = import_graph()
    allowed = {"nnunet_robustness.conditions", "nnunet_robustness.modalities", "nnunet_robustness.io",
               "nnunet_robustness.errors"}
    offenders = sorted(f"{module} -> {target}" for module, targets in graph.items()
                       if module.startswith("nnunet_robustness.records") for target in targets
                       if target not in allowed and not target.startswith("nnunet_robustness.records"))
    assert offenders == []


@pytest.mark.parametrize("importers, imported", [
    # metrics, analysis and reports read what run wrote through records/, never the runner (torch, nnU-Net)
    (("nnunet_robustness.metrics", "nnunet_robustness.analysis", "nnunet_robustness.reports"),
     "nnunet_robustness.runner"),
    # a trainer writes its record (records/); what eval makes of it is analysis, downstream of training
    (("nnunet_robustness.trainers",), "nnunet_robustness.analysis"),
    # spec parsing knows the attacks' names from conditions, not the attacks (torch) themselves
    (("nnunet_robustness.corruptions",), "nnunet_robustness.adversarial"),
])
def test_stages_do_not_import_what_comes_after_them(importers, imported):
    assert _imports_into(import_graph(), importers, imported) == []


def test_the_stage_rule_sees_an_arrow():
    graph = {"nnunet_robustness.metrics.x": {"nnunet_robustness.runner.y"}, "nnunet_robustness.runner.y": set(),
             "nnunet_robustness.metrics.z": {"nnunet_robustness.runnerish"}}
    assert _imports_into(graph, ("nnunet_robustness.metrics",), "nnunet_robustness.runner") == [
        "nnunet_robustness.metrics.x -> nnunet_robustness.runner.y"]


MAX_FUNCTION_LINES = 80


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    """(qualified name, lines) of every function or method of ``source`` longer than ``limit`` lines, from
    its ``def`` line to the end of its body (decorators not counted)."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = child.end_lineno - child.lineno + 1
                if lines > limit:
                    found.append((f"{prefix}{child.name}", lines))
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def test_no_function_is_longer_than_80_lines():
    """A function that does not fit on a screen does several things; split it into named steps."""
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{name} ({lines} lines)"
                 for path in sorted(PACKAGE.rglob("*.py"))
                 for name, lines in long_functions(path.read_text())]
    assert offenders == []


def test_the_length_rule_counts_from_def_to_the_end_of_the_body():
    def function(name: str, body_lines: int, indent: str = "") -> str:
        body = "".join(f"{indent}    x{i} = {i}\n" for i in range(body_lines))
        return f"{indent}@decorator\n{indent}def {name}():\n{body}"

    assert long_functions(function("fits", MAX_FUNCTION_LINES - 1)) == []  # def + 79 lines; decorator not counted
    assert long_functions(function("over", MAX_FUNCTION_LINES)) == [("over", 81)]
    assert long_functions("class A:\n" + function("m", MAX_FUNCTION_LINES, "    ")) == [("A.m", 81)]
    assert long_functions("def outer():\n" + function("inner", MAX_FUNCTION_LINES, "    ")) == [
        ("outer", 83), ("outer.inner", 81)]


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
    "from nnunet_robustness.analysis.eval_pipeline import evaluate; from nnunet_robustness.reports.eval_report import "
    "write_report",
    "from nnunet_robustness.trust import calibrate, rate; from nnunet_robustness.reports.trust import write_report",
    "from nnunet_robustness.analysis.recommend import recommend",
    "from nnunet_robustness.analysis.card import build_cards; from nnunet_robustness.reports.card import html_card",
    "from nnunet_robustness.records import context_fbr, input_change, item_view, run_manifest, training_fbr, "
    "training_record",
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


# A file name says a module's role: two modules may share one only when they are the same concept at
# different stages (its computation in analysis/, its page in reports/, its eval adapter in
# analysis/eval_analyses/, its command in cli/) or a role every package may have (a name -> class registry).
SHARED_ROLE_NAMES = {"registry.py"}


def _same_concept_stages(paths: list[Path]) -> bool:
    packages = sorted(str(p.parent.relative_to(PACKAGE)) for p in paths)
    stages = {"analysis", "reports", "analysis/eval_analyses", "cli"}
    return all(package in stages for package in packages) or \
        (len(paths) == 2 and "cli" in packages)


def test_no_two_modules_share_a_file_name_for_different_things():
    by_name: dict[str, list[Path]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name != "__init__.py":
            by_name.setdefault(path.name, []).append(path)
    clashes = {name: sorted(str(p.relative_to(PACKAGE)) for p in paths) for name, paths in by_name.items()
               if len(paths) > 1 and name not in SHARED_ROLE_NAMES and not _same_concept_stages(paths)}
    assert not clashes, clashes


def test_no_module_defines_a_top_level_name_twice():
    """A second ``def`` of a name silently replaces the first (merges leave such twins behind)."""
    twice = {}
    for path in [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "tests").rglob("*.py")]:
        names = [node.name for node in ast.parse(path.read_text()).body
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            twice[str(path.relative_to(PACKAGE.parent))] = repeated
    assert not twice, twice
