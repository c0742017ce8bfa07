"""The package's folder rules, read from its imports (every import, module-level or inside a function).

- the NeRF wing (dreamfusion_jax.nerf) imports nothing else of the package;
- the guidance wing imports nothing of the NeRF or Shapes wings, and of the root only errors and files;
- nothing below the root imports `train`, and of the root only `main` does;
- there are no import circles.
"""

import ast
import os

import pytest
from conftest import ROOT

PACKAGE = "dreamfusion_jax"


def modules() -> dict[str, str]:
  """Dotted module name -> file path, for every module of the package."""
  out = {}
  for directory, _, names in os.walk(os.path.join(ROOT, PACKAGE)):
    for name in names:
      if name.endswith(".py"):
        path = os.path.join(directory, name)
        dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        out[dotted.removesuffix(".__init__")] = path
  return out


def imports_of(name: str, path: str, known: dict) -> set[str]:
  """The package modules `name` imports ('from a import b' counts as a.b when a.b is a module, else a)."""
  package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
  found = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
      for alias in node.names:
        found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
  return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
  known = modules()
  return {name: imports_of(name, path, known) for name, path in known.items()}


def wing(module: str) -> str:
  """'nerf', 'guidance', 'shapes', or 'root' (the package's top-level modules)."""
  parts = module.split(".")
  return parts[1] if len(parts) > 2 else "root"


def test_the_graph_is_read_right():
  g = graph()
  # A few imports known to exist, module-level and inside functions: the reader must see them.
  assert "dreamfusion_jax.nerf.render" in g["dreamfusion_jax.nerf.views"]
  assert "dreamfusion_jax.train" in g["dreamfusion_jax.main"]  # Imported inside main().
  assert "dreamfusion_jax.guidance.interface" in g["dreamfusion_jax.guidance.registry"]
  assert {"nerf", "guidance", "shapes", "root"} == {wing(m) for m in g}


@pytest.mark.parametrize(
  "source,forbidden",
  [
    ("nerf", {"guidance", "shapes", "root"}),
    ("guidance", {"nerf", "shapes"}),
  ],
)
def test_wings_import_only_what_lies_below_them(source, forbidden):
  bad = sorted(
    f"{m} imports {t}" for m, targets in graph().items() if wing(m) == source for t in targets if wing(t) in forbidden
  )
  assert not bad, bad


def test_the_guidance_wing_uses_only_errors_and_files_of_the_root():
  allowed = {"dreamfusion_jax.errors", "dreamfusion_jax.files"}
  bad = sorted(
    f"{m} imports {t}"
    for m, targets in graph().items()
    if wing(m) == "guidance"
    for t in targets
    if wing(t) == "root" and t not in allowed
  )
  assert not bad, bad


def test_only_main_imports_train():
  importers = sorted(m for m, targets in graph().items() if "dreamfusion_jax.train" in targets)
  assert importers == ["dreamfusion_jax.main"], importers


def find_cycle(g: dict[str, set[str]]):
  """One import circle as a list of modules, or None (depth-first search)."""
  state, stack = {}, []

  def visit(u):
    state[u] = "open"
    stack.append(u)
    for v in sorted(g[u]):
      if state.get(v) == "open":
        return stack[stack.index(v) :] + [v]
      if v not in state:
        found = visit(v)
        if found:
          return found
    stack.pop()
    state[u] = "done"
    return None

  for u in sorted(g):
    if u not in state:
      found = visit(u)
      if found:
        return found
  return None


def test_no_import_circles():
  assert find_cycle(graph()) is None, " -> ".join(find_cycle(graph()))


def test_find_cycle_finds_a_planted_circle():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
