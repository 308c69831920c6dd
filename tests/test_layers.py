"""The package's layers import one way (docs/layout.md): a module imports only from its own layer or the ones
below, and no modules import each other, directly or round a longer circle."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nadexp"
LAYERS = (  # lowest first: a module may import from its own layer and every layer above it in this list
    ("nadexp", "nadexp.errors", "nadexp.run"),
    (
        "nadexp.run.tasks",
        "nadexp.run.identity",
        "nadexp.run.settings",
        "nadexp.run.writable",
        "nadexp.results",
        "nadexp.loggers",
        "nadexp.run.context",
        "nadexp.generators",
        "nadexp.devices",
        "nadexp.cores",
        "nadexp.progress",
        "nadexp.console",
    ),
    ("nadexp.models",),
    ("nadexp.data",),
    ("nadexp.training",),
    ("nadexp.reports",),
    ("nadexp.estimators",),
    ("nadexp.sweeps",),
    ("nadexp.config", "nadexp.run.execute"),
    ("nadexp.cli", "nadexp.api", "nadexp.run.hydra_errors", "nadexp.run.help"),
)
LAZY_EXPORTS = {"nadexp": {"nadexp.api"}}  # the package hands out the API's names on first use (nadexp/__init__.py)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, known: set[str]) -> set[str]:
    """Every nadexp module that ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in known}


def layer_of(module: str) -> int:
    """The layer that names ``module`` itself, else the one that names its package (nadexp.run's modules are in two)."""
    for index, layer in enumerate(LAYERS):
        if module in layer:
            return index
    for index, layer in enumerate(LAYERS):
        if any(module.startswith(part + ".") for part in layer if part not in ("nadexp", "nadexp.run")):
            return index
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS and to docs/layout.md")


GRAPH = {}
_paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
for _name, _path in _paths.items():
    GRAPH[_name] = imports(_path, set(_paths))


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_a_module_imports_only_its_own_layer_and_lower_ones(module):
    upward = [other for other in GRAPH[module] - LAZY_EXPORTS.get(module, set()) if layer_of(other) > layer_of(module)]
    assert not upward, f"{module} (layer {LAYERS[layer_of(module)]}) imports a higher layer: {upward}"


def test_no_modules_import_each_other():
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for other in sorted(GRAPH[module]):
            if other == module or (module == "nadexp" or other == "nadexp"):
                continue
            assert state.get(other) != "open", f"circular imports: {' -> '.join(path + [other])}"
            if other not in state:
                visit(other, path + [other])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_the_layering_check_finds_an_upward_import_and_a_circle():
    global GRAPH
    kept = dict(GRAPH)
    try:
        GRAPH = {**kept, "nadexp.data.settings": kept["nadexp.data.settings"] | {"nadexp.estimators.nads"}}
        with pytest.raises(AssertionError, match="imports a higher layer"):
            test_a_module_imports_only_its_own_layer_and_lower_ones("nadexp.data.settings")
        GRAPH = {**kept, "nadexp.data.nad_file": kept["nadexp.data.nad_file"] | {"nadexp.data.settings"}}
        with pytest.raises(AssertionError, match="circular imports"):
            test_no_modules_import_each_other()
    finally:
        GRAPH = kept


def test_the_command_line_checks_import_no_torch():
    """What run.py loads before it has checked a command: --help and a config error answer without torch."""
    code = (
        "import sys, nadexp, nadexp.cli, nadexp.config, nadexp.run.identity, nadexp.run.tasks, nadexp.run.settings, nadexp.console; "
        "import nadexp.run.hydra_errors; "
        "import nadexp.results.schema, nadexp.results.resume; "
        "print(sorted(m for m in ('torch', 'pytorch_lightning', 'torchvision', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
