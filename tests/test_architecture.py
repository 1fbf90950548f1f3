"""The layout the code promises: no import cycle, and imports only in the intended direction.

    solvers  <-  sfl_env  <-  agents  <-  evaluation  <-  scripts (train_agent.py, train_rllib.py, sweep.py,
                                                                evaluate.py, benchmarks/)

The graph is read from the source with ``ast`` (every import, at module level or inside a function,
except those under ``if TYPE_CHECKING:``), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("solvers", "sfl_env", "agents", "evaluation", "scripts")
SCRIPTS = ("train_agent.py", "train_rllib.py", "sweep.py", "evaluate.py", "benchmarks")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_files() -> dict[str, Path]:
    files = [p for package in LAYERS[:-1] for p in (ROOT / package).rglob("*.py")]
    files += [ROOT / name for name in SCRIPTS if name.endswith(".py")] + [*(ROOT / "benchmarks").glob("*.py")]
    return {module_name(p): p for p in files}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules (and third-party top-level names) ``name`` imports at run time."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found - {name}


def import_graph() -> dict[str, set[str]]:
    files = project_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def layer(module: str) -> int | None:
    top = module.split(".")[0]
    if top in LAYERS:
        return LAYERS.index(top)
    if top in {name.removesuffix(".py") for name in SCRIPTS}:
        return LAYERS.index("scripts")
    return None  # third-party


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in graph:
                continue
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := dfs(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def wrong_way_imports(graph: dict[str, set[str]]) -> list[str]:
    return [f"{source} -> {target}" for source, targets in graph.items() for target in targets
            if layer(target) is not None and layer(target) > layer(source)]


def test_the_checks_find_what_they_look_for():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "numpy"}, "b": {"c"}, "c": set()}) is None
    assert wrong_way_imports({"sfl_env.env": {"agents.base"}, "agents.base": {"sfl_env.env"}}) == [
        "sfl_env.env -> agents.base"]
    assert "sfl_env.training.protocol" in imports_of(
        "sfl_env.training.real", ROOT / "sfl_env/training/real.py", set(project_files()))


def test_there_is_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_imports_point_one_way_only():
    assert wrong_way_imports(import_graph()) == []


@pytest.mark.parametrize("module, allowed", [
    # configuration is data: it may read the option vocabulary, the scheme catalogue and the task table,
    # nothing that runs
    ("sfl_env.config", {"sfl_env.errors", "sfl_env.validation", "sfl_env.schemes", "sfl_env.tasks",
                        "sfl_env.hardware"}),
    ("sfl_env.hardware", {"sfl_env.errors", "sfl_env.validation"}),
    ("sfl_env.tasks", {"sfl_env.errors", "sfl_env.validation"}),
    ("sfl_env.schemes", {"sfl_env.errors", "sfl_env.schemes."}),
    ("sfl_env.schemes.", {"sfl_env.schemes."}),
    ("solvers", {"solvers"}),
])
def test_modules_import_only_what_their_layer_allows(module, allowed):
    graph = import_graph()
    sources = [m for m in graph if m == module or (module.endswith(".") and m.startswith(module))]
    assert sources
    for source in sources:
        project = {t for t in graph[source] if layer(t) is not None}
        assert all(any(t == a or (a.endswith(".") and t.startswith(a)) or t.startswith(a + ".") for a in allowed)
                   for t in project), f"{source} imports {sorted(project)}"


# The RLlib integration (the [rllib] extra) is the only place Ray may appear below the scripts, and no
# other module of the packages imports it, so the core never needs Ray.
RAY_INTEGRATIONS = {"sfl_env.rllib", "agents.rllib", "agents.masked_ppo"}


@pytest.mark.parametrize("package, forbidden", [
    ("solvers", {"torch", "gymnasium", "wandb", "ray"}),
    ("sfl_env", {"wandb", "ray", "stable_baselines3"}),
    ("agents", {"wandb", "ray"}),
])
def test_heavy_or_optional_libraries_stay_out_of_the_core(package, forbidden):
    graph = import_graph()
    offenders = {f"{m} -> {t}" for m, targets in graph.items() if m.split(".")[0] == package
                 for t in targets if t.split(".")[0] in forbidden
                 and not (m in RAY_INTEGRATIONS and t.split(".")[0] == "ray")}
    assert not offenders


def test_only_the_integrations_and_the_scripts_import_the_ray_integrations():
    graph = import_graph()
    importers = {f"{m} -> {t}" for m, targets in graph.items() for t in targets & RAY_INTEGRATIONS
                 if m not in RAY_INTEGRATIONS and layer(m) != LAYERS.index("scripts")
                 and not (m == "agents" and t == "agents.rllib")}  # agents.load, only for an RLlib run folder
    assert not importers


def test_no_module_is_much_over_400_lines():
    long = {name: n for name, path in project_files().items() if (n := len(path.read_text().splitlines())) > 450}
    assert not long
