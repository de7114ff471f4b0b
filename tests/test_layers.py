"""The package's layering, read from its imports: nothing imports from a layer above its own."""

import ast
from pathlib import Path

import ssl_pretrain

PACKAGE = Path(ssl_pretrain.__file__).parent

# Top to bottom, as the package docstring states them.
LAYERS = [
    {"__init__", "__main__", "cli", "api", "commands"},
    {"train"},
    {"evaluation"},
    {"tasks", "encoders", "data", "build", "runs"},
    {"utils", "config", "registry", "options", "typecheck", "errors"},
]


def _layer(part: str) -> int:
    """The layer of a top-level module or package; a name that is neither comes from ``__init__``."""
    return next((i for i, names in enumerate(LAYERS) if part in names), 0)


def _imports(path: Path) -> list[tuple[str, int]]:
    """``(top-level part of ssl_pretrain imported, line)`` for every import in ``path``, lazy ones included."""
    module_parts = path.relative_to(PACKAGE).with_suffix("").parts
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(module_parts[: len(module_parts) - node.level])
                target = base + (node.module.split(".") if node.module else [])
                if not target:  # "from . import x" at the top: x is a module of the package
                    target = [alias.name for alias in node.names][:1]
            elif node.module and node.module.startswith("ssl_pretrain"):
                target = node.module.split(".")[1:] or [alias.name for alias in node.names][:1]
            else:
                continue
            found.append((target[0], node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ssl_pretrain."):
                    found.append((alias.name.split(".")[1], node.lineno))
    return found


def test_every_module_belongs_to_a_layer():
    parts = {p.relative_to(PACKAGE).with_suffix("").parts[0] for p in PACKAGE.rglob("*.py")}
    assert all(any(part in names for names in LAYERS) for part in parts), parts


def test_no_module_imports_from_a_layer_above_its_own():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = path.relative_to(PACKAGE).with_suffix("").parts[0]
        for target, line in _imports(path):
            if _layer(target) < _layer(own):
                violations.append(f"{path.relative_to(PACKAGE)}:{line} imports {target}")
    assert not violations, "\n".join(violations)


def test_the_layering_catches_an_upward_import(tmp_path, monkeypatch):
    bad = PACKAGE / "data" / "_layer_probe.py"
    bad.write_text("from ..evaluation import probe\n")
    try:
        assert ("evaluation", 1) in _imports(bad)
        assert _layer("evaluation") < _layer("data")
    finally:
        bad.unlink()


def test_the_whole_config_reaches_only_the_commands_and_five_helpers_in_evaluation():
    """Evaluation's entry points (the command table's ``run`` functions) take the Config; the functions under
    them take the values they use, but for four of the frozen wing's and select's call of embed."""
    from ssl_pretrain.commands.table import BUILT_IN

    runs = {row.run.split(":")[1] for row in BUILT_IN.values() if row.run.startswith("ssl_pretrain.evaluation")}
    takers = []
    for path in sorted((PACKAGE / "evaluation").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                annotations = [a.annotation for a in node.args.args + node.args.kwonlyargs if a.annotation]
                if any(isinstance(a, ast.Name) and a.id == "Config" for a in annotations):
                    takers.append(node.name)
    assert "run_finetune" in takers, "the scan sees the entry points"
    assert len(set(takers) - runs) <= 5, sorted(set(takers) - runs)


EVALUATION = PACKAGE / "evaluation"
WINGS = {"embedding", "extras", "finetuning", "frozen"}
FLOOR = {"features", "shared"}  # what every wing may stand on; features itself stands on shared alone


def _evaluation_imports(path: Path) -> set[str]:
    """The evaluation sub-packages ``path`` imports from (relative or absolute, lazy ones included)."""
    module_parts = path.relative_to(PACKAGE).with_suffix("").parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            target = list(module_parts[: len(module_parts) - node.level]) + (node.module or "").split(".")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ssl_pretrain."):
            target = node.module.split(".")[1:]
        else:
            continue
        if target[:1] == ["evaluation"] and len(target) > 1 and target[1]:
            found.add(target[1])
    return found


def test_each_evaluation_wing_imports_only_itself_the_features_floor_and_shared():
    allowed = {**{wing: {wing, *FLOOR} for wing in WINGS}, "features": set(FLOOR), "shared": {"shared"}}
    assert {p.name for p in EVALUATION.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(allowed)
    violations = []
    for part, may in allowed.items():
        for path in sorted((EVALUATION / part).rglob("*.py")):
            for target in _evaluation_imports(path) - may:
                violations.append(f"{path.relative_to(PACKAGE)} imports evaluation.{target}")
    assert not violations, "\n".join(violations)


def test_the_wing_check_sees_a_wing_importing_another(tmp_path):
    bad = EVALUATION / "embedding" / "_wing_probe.py"
    bad.write_text("from ..finetuning import run\nfrom ssl_pretrain.evaluation.frozen import knn\n")
    try:
        assert _evaluation_imports(bad) == {"finetuning", "frozen"}
    finally:
        bad.unlink()


def test_no_module_over_450_lines_and_no_function_over_60():
    """Small modules with one job: the package's size limits, read from its source."""
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > 450:
            too_long.append(f"{path.relative_to(PACKAGE)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                too_long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}")
    assert not too_long, too_long
