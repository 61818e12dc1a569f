"""The package's structure rules, as tests that fail when broken.

- icl_jax.interventions is generic: it imports only icl_jax.models, itself,
  jax/numpy/flax and the standard library (tqdm only inside functions);
- the study layer has exactly one definition of each shared idea;
- no module uses another module's `_private` names;
- scripts are configuration: no sys.path edits, no script imports another;
- size limits: files and functions in icl_jax, scripts in experiments.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "icl_jax"
SCRIPTS = ROOT / "experiments"
MAX_FILE_LINES = 600
# The report package: smaller files still (issue 20).
REPORT_PKG = PKG / "analysis" / "report"
MAX_REPORT_FILE_LINES = 400
MAX_FUNCTION_LINES = 80


def _modules(root: Path):
  return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _tree(path: Path) -> ast.Module:
  return ast.parse(path.read_text(), filename=str(path))


def _module_name(path: Path) -> str:
  rel = path.relative_to(ROOT).with_suffix("")
  parts = list(rel.parts)
  if parts[-1] == "__init__":
    parts = parts[:-1]
  return ".".join(parts)


def _imports(tree: ast.Module):
  """(module name, imported names, node, at module level) of every import."""
  top = set(map(id, tree.body))
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        yield a.name, [], node, id(node) in top
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      yield node.module, [a.name for a in node.names], node, id(node) in top


# ---------------------------------------------------------------------------
# Layering
# ---------------------------------------------------------------------------

ALLOWED_IN_INTERVENTIONS = ("icl_jax.models", "icl_jax.interventions", "jax",
                            "jaxlib", "numpy", "flax", "__future__")
FUNCTION_ONLY = ("tqdm",)  # progress bars, imported where used


def test_interventions_import_only_models():
  stdlib = set(sys.stdlib_module_names)
  bad = []
  for path in _modules(PKG / "interventions"):
    for mod, names, node, top in _imports(_tree(path)):
      root = mod.split(".")[0]
      if mod == "icl_jax":  # `from icl_jax import models` style
        mods = [f"icl_jax.{n}" for n in names]
      else:
        mods = [mod]
      for m in mods:
        ok = (root in stdlib or any(m == a or m.startswith(a + ".")
                                    for a in ALLOWED_IN_INTERVENTIONS)
              or (root in FUNCTION_ONLY and not top))
        if not ok:
          bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {m}")
  assert not bad, "icl_jax.interventions must stay generic:\n" + "\n".join(bad)


def test_studies_do_not_import_scripts():
  bad = [f"{p.relative_to(ROOT)}:{node.lineno} imports {mod}"
         for p in _modules(PKG) for mod, _, node, _ in _imports(_tree(p))
         if mod == "experiments" or mod.startswith("experiments.")]
  assert not bad, "\n".join(bad)


# ---------------------------------------------------------------------------
# One definition of each idea
# ---------------------------------------------------------------------------

# Each entry: the names that would implement the same idea (any one of them
# counts) -> exactly one definition in icl_jax/ and experiments/.
ONE_DEFINITION = {
    "episode/pair setup builder": {"setup_pairs", "make_setups"},
    "faithful index lookup": {"faithful_indices", "_faithful_indices"},
    "position map (faithful)": {"faithful_map"},
    "position map (aligned)": {"aligned_map"},
    "outcome classification": {"classify", "classify_order"},
    "accuracy/disruption rows": {"accuracy_rows"},
    "run object": {"Study", "RunRecord"},
    "layer parser": {"parse_layers"},
    "modes table": {"MODES"},
    "mode specs": {"MODE_SPECS"},
    "mode parser": {"parse_modes"},
    "pair parser": {"parse_pairs"},
    # "edit the targets at a position set and score the generations"
    "cell builder": {"plans_to_cells", "build_cells"},
    "row builder": {"cell_row", "evaluate_cells", "score_rows"},
}


def _definitions():
  """name -> [where] for every def / class / module-level assignment."""
  out = {}
  for path in _modules(PKG / "studies") + _modules(PKG / "interventions") + \
      _modules(SCRIPTS):
    tree = _tree(path)
    for node in ast.walk(tree):
      names = []
      if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        names = [node.name]
      elif isinstance(node, ast.Assign) and node in tree.body:
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
      for n in names:
        out.setdefault(n, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
  return out


@pytest.mark.parametrize("idea", sorted(ONE_DEFINITION))
def test_one_definition_of_each_idea(idea):
  defs = _definitions()
  where = [w for n in ONE_DEFINITION[idea] for w in defs.get(n, [])]
  assert len(where) == 1, f"{idea}: defined {len(where)} times: {where}"


# ---------------------------------------------------------------------------
# No cross-module private names
# ---------------------------------------------------------------------------

def _private_uses(path: Path):
  """`from X import _name`, `alias._name` on an imported project module and
  getattr(alias, "_name"), where X is another icl_jax/experiments module."""
  tree = _tree(path)
  me = _module_name(path)
  project = ("icl_jax", "experiments", "tests", "benchmarks")
  aliases = {}
  for mod, names, node, _ in _imports(tree):
    if mod.split(".")[0] not in project:
      continue
    if isinstance(node, ast.ImportFrom):
      for a in node.names:
        if a.name.startswith("_") and not a.name.startswith("__") and \
            mod != me:
          yield node.lineno, f"from {mod} import {a.name}"
        aliases[a.asname or a.name] = f"{mod}.{a.name}"
    else:
      for a in node.names:
        aliases[a.asname or a.name.split(".")[0]] = a.name
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in aliases and node.attr.startswith("_")
        and not node.attr.startswith("__")):
      yield node.lineno, f"{node.value.id}.{node.attr}"
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        and node.func.id == "getattr" and len(node.args) >= 2
        and isinstance(node.args[0], ast.Name)
        and node.args[0].id in aliases
        and isinstance(node.args[1], ast.Constant)
        and str(node.args[1].value).startswith("_")
        and not str(node.args[1].value).startswith("__")):
      yield node.lineno, f"getattr({node.args[0].id}, {node.args[1].value!r})"


def test_no_cross_module_private_names():
  bad = [f"{p.relative_to(ROOT)}:{line}: {what}"
         for p in _modules(PKG) + _modules(SCRIPTS)
         for line, what in _private_uses(p)]
  assert not bad, "\n".join(bad)


# ---------------------------------------------------------------------------
# Scripts are configuration
# ---------------------------------------------------------------------------

def test_scripts_do_not_edit_sys_path_or_import_each_other():
  bad = []
  for p in _modules(SCRIPTS):
    text = p.read_text()
    if "sys.path" in text:
      bad.append(f"{p.relative_to(ROOT)}: edits sys.path")
    for mod, names, node, _ in _imports(_tree(p)):
      targets = ([f"{mod}.{n}" for n in names] if mod == "experiments"
                 else [mod])
      for t in targets:
        if t.startswith("experiments.") and t != "experiments.common":
          bad.append(f"{p.relative_to(ROOT)}:{node.lineno} imports {t}")
  assert not bad, "\n".join(bad)


# ---------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------

def _long_functions(path: Path, limit: int):
  for node in ast.walk(_tree(path)):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      n = node.end_lineno - node.lineno + 1
      if n > limit:
        yield f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines"


def test_package_files_and_functions_are_small():
  bad = []
  for p in _modules(PKG):
    limit = (MAX_REPORT_FILE_LINES if REPORT_PKG in p.parents
             else MAX_FILE_LINES)
    n = len(p.read_text().splitlines())
    if n > limit:
      bad.append(f"{p.relative_to(ROOT)}: {n} lines (limit {limit})")
    bad.extend(_long_functions(p, MAX_FUNCTION_LINES))
  assert not bad, "\n".join(bad)


# Scripts: flags plus calls; probe and synthetic scripts may be longer.
SCRIPT_LIMIT = 150
LONG_SCRIPTS = {"localization", "trajectory", "task_decodability",
                "task_vectors", "template_similarity", "ontology",
                "synthetic_emergence"}
LONG_SCRIPT_LIMIT = 250
NOT_SCRIPTS = {"__init__", "common", "report"}  # shared flags; the report


def test_scripts_are_small_and_define_no_classes():
  bad = []
  for p in _modules(SCRIPTS):
    if p.stem in NOT_SCRIPTS:
      continue
    limit = LONG_SCRIPT_LIMIT if p.stem in LONG_SCRIPTS else SCRIPT_LIMIT
    n = len(p.read_text().splitlines())
    if n > limit:
      bad.append(f"{p.relative_to(ROOT)}: {n} lines (limit {limit})")
    bad.extend(f"{p.relative_to(ROOT)}:{c.lineno} class {c.name}"
               for c in ast.walk(_tree(p)) if isinstance(c, ast.ClassDef))
  assert not bad, "\n".join(bad)


# ---------------------------------------------------------------------------
# The checkers themselves catch what they are meant to catch
# ---------------------------------------------------------------------------

def test_checkers_catch_violations(tmp_path, monkeypatch):
  monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
  pkg = tmp_path / "icl_jax" / "x"
  pkg.mkdir(parents=True)
  f = pkg / "m.py"
  f.write_text(
      "from icl_jax.models.decoder import _embed\n"
      "from icl_jax.studies import plans\n"
      "import icl_jax.tasks.layout as lay\n"
      "def g():\n"
      "  a = plans._layout\n"
      "  b = getattr(lay, '_split')\n"
      "  c = plans.__doc__\n"
      "  return a, b, c\n" + "".join(f"  x{i} = {i}\n" for i in range(90)))
  found = [w for _, w in _private_uses(f)]
  assert found == ["from icl_jax.models.decoder import _embed",
                   "plans._layout", "getattr(lay, '_split')"], found
  assert [w.split(":")[-1].strip() for w in _long_functions(f, 80)] == [
      "95 lines"]
