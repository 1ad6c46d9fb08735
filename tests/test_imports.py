"""Imports run one way (issues 19, 26): checks -> data -> models -> training -> evaluation -> spec -> experiment ->
api -> run_experiments (the command line on top of the API), no module imports a later layer, and no import circle
exists between modules."""

import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
LAYERS = ("checks", "data", "models", "training", "evaluation", "spec", "experiment", "api", "run_experiments")


def project_imports():
    """{module: {project modules it imports, at any depth of its code}}, for every module outside tests/."""
    modules = {}
    for path in REPO.glob("**/*.py"):
        relative = path.relative_to(REPO)
        if relative.parts[0] not in LAYERS and relative.stem not in LAYERS or relative.parts[0] == "tests":
            continue
        name = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        modules[name] = {module for module in imported if module.split(".")[0] in LAYERS}
    return {name: {module for module in imported if module in modules} for name, imported in modules.items()}


def layer(module):
    return LAYERS.index(module.split(".")[0])


def test_no_module_imports_a_later_layer():
    upward = sorted((name, module) for name, imported in project_imports().items() for module in imported
                    if layer(module) > layer(name))
    assert not upward, upward


def test_no_import_circle():
    graph = project_imports()
    assert len(graph) > 40  # the walk found the project
    state = {}

    def visit(name, path):
        state[name] = "open"
        for module in sorted(graph[name]):
            assert state.get(module) != "open", " -> ".join([*path, module])
            if module not in state:
                visit(module, [*path, module])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
