"""The package's boundaries: the library never imports the benchmarks, the benchmarks use only its public
names, no module uses another's private names, and importing trbert (or asking the command line for help)
loads nothing heavy, while transformers still learns trbert's classes."""

import ast
from pathlib import Path

import trbert

PACKAGE = Path(trbert.__file__).parent
OUTSIDE_THE_LIBRARY = ("benchmarks", "cli", "__main__")  # the benchmarks and the command line sit on top of it


def modules():
    """(dotted name, path, parsed source) of every module of the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path, ast.parse(path.read_text(encoding="utf-8"))


def imports(name: str, path: Path, tree: ast.Module):
    """(module imported from, names imported) of every import statement, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            yield source, [alias.name for alias in node.names]


def in_library(name: str) -> bool:
    return not any(name == f"trbert.{part}" or name.startswith(f"trbert.{part}.") for part in OUTSIDE_THE_LIBRARY)


def test_the_tree_is_read_whole():
    names = {name for name, _, _ in modules()}
    assert {"trbert.reduction", "trbert.strategies.policy", "trbert.benchmarks.bbc", "trbert.cli.train"} <= names


def test_no_library_module_imports_the_benchmarks_or_the_command_line():
    offenders = []
    for name, path, tree in modules():
        if not in_library(name):
            continue
        for source, names in imports(name, path, tree):
            targets = [source] + [f"{source}.{n}" for n in names]
            if any(t and not in_library(t) and t.startswith("trbert.") for t in targets):
                offenders.append(f"{name} imports {source} {names}")
    assert not offenders, offenders


def test_no_private_name_is_imported_across_modules():
    offenders = []
    for name, path, tree in modules():
        for source, names in imports(name, path, tree):
            if not (source or "").startswith("trbert"):
                continue
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            hidden = [part for part in source.split(".") if part.startswith("_")]
            if private or hidden:
                offenders.append(f"{name}: from {source} import {names}")
    assert not offenders, offenders


def test_no_private_attribute_of_another_trbert_module_is_used():
    """`module._name` where `module` is a trbert module bound by an import."""
    offenders = []
    for name, path, tree in modules():
        bound = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("trbert")):
                bound |= {alias.asname or alias.name for alias in node.names}
            elif isinstance(node, ast.Import):
                bound |= {alias.asname or alias.name for alias in node.names if alias.name.startswith("trbert")}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in bound):
                offenders.append(f"{name}: {node.value.id}.{node.attr}")
    assert not offenders, offenders


def test_benchmarks_import_the_library_by_its_public_names():
    offenders = []
    for name, path, tree in modules():
        if not name.startswith("trbert.benchmarks"):
            continue
        for source, names in imports(name, path, tree):
            if source and source.startswith("trbert.") and in_library(source):
                if any(n.startswith("_") for n in names) or any(p.startswith("_") for p in source.split(".")):
                    offenders.append(f"{name}: from {source} import {names}")
    assert not offenders, offenders








def test_scripts_use_the_public_api():
    offenders, scripts = [], sorted((PACKAGE.parents[1] / "scripts").glob("*.py"))
    assert len(scripts) >= 5
    for path in scripts:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for source, names in imports("scripts", path, tree):
            if (source or "").startswith("trbert"):
                private = [n for n in names if n.startswith("_")] + [p for p in source.split(".") if p.startswith("_")]
                if private:
                    offenders.append(f"{path.name}: from {source} import {names}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") \
                    and isinstance(node.value, ast.Name) and node.value.id in {"trbert", "evaluation", "training",
                                                                                "data", "tasks", "main_job"}:
                offenders.append(f"{path.name}: {node.value.id}.{node.attr}")
    assert not offenders, offenders
