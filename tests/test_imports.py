"""The package boundaries of docs/design.md, checked: every module imports in a fresh interpreter,
``unet3d`` needs nothing of the project, ``sims`` needs neither torch nor the emulator, and the
package-level import graph (every import statement, also those inside functions) has no cycle."""
import ast
import json
import pathlib
import subprocess
import sys


ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("sims", "unet3d", "emulator", "outpaint", "jobs")


def module_name(path):
    """Dotted name of a project source file (a package's ``__init__.py`` names the package)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(package=None):
    """(dotted name, path) of every module of the project (or of one package), ``__main__``
    modules left out (importing one runs the command)."""
    paths = sorted(path for top in ([package] if package else PACKAGES)
                   for path in (ROOT / top).rglob("*.py") if path.stem != "__main__")
    return [(module_name(path), path) for path in paths]


def modules_loaded_by(names):
    """Names in ``sys.modules`` of a fresh interpreter after importing ``names``."""
    code = ("import importlib, json, sys\n"
            f"for name in {list(names)!r}:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def top_level(name):
    return name.split(".")[0]


def test_every_module_imports_in_a_fresh_interpreter():
    names = [name for name, _ in project_modules()]
    assert set(names) <= modules_loaded_by(names)


def test_unet3d_pulls_in_no_other_project_package():
    loaded = modules_loaded_by([name for name, _ in project_modules("unet3d")])
    assert {top_level(name) for name in loaded} & set(PACKAGES) == {"unet3d"}


def test_sims_pulls_in_neither_torch_nor_the_emulator():
    loaded = {top_level(name) for name in modules_loaded_by([name for name, _ in project_modules("sims")])}
    assert not loaded & {"torch", "unet3d", "emulator", "outpaint", "jobs"}


def package_of(module, packages):
    """The innermost project package holding ``module`` (a package is its own), or None."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in packages:
            return ".".join(parts[:end])
    return None


def imported_names(path, module):
    """Absolute names of every module ``path`` imports, at any depth of its code; a name from
    ``from X import y`` counts as ``X.y`` (a submodule, or an attribute of X)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def package_graph():
    """{package: set of other project packages its modules import}; packages are the folders with
    an ``__init__.py``, so ``emulator.cli`` is a node of its own: the CLI may sit on top of
    ``emulator`` and ``outpaint`` as long as neither imports it back."""
    modules = project_modules()
    packages = {module_name(path) for _, path in modules if path.name == "__init__.py"}
    graph = {package: set() for package in packages}
    for module, path in modules:
        source = package_of(module, packages)
        for name in imported_names(path, module):
            target = package_of(name, packages)
            if target is not None and target != source:
                graph[source].add(target)
    return graph


def find_cycle(graph):
    """One cycle of ``graph`` as a list of nodes (first repeated at the end), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_imported_names_include_lazy_and_relative_imports(tmp_path):
    source = tmp_path / "run.py"
    source.write_text("import numpy\nfrom . import plan\n\n\ndef f():\n    from ..emulator.generate import g\n")
    assert imported_names(source, "outpaint.sub.run") == ["numpy", "outpaint.sub.plan", "outpaint.emulator.generate.g"]


def test_package_import_graph_has_no_cycle():
    graph = package_graph()
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
