"""exp6: task ontology from task vectors (protocol 8.6)
(`experiments/ontology.py`).

Per task, the mean over N prompts of the residual after a block at one
position (faithful: the study's `last_demo_token`; aligned: the last demo's
final answer token); per (mode, layer) the cosine similarity matrix, average
linkage, PCA, silhouette w.r.t. the regimes with a permutation test, and
within- vs between-regime cosine (`analysis.ontology.analyse`). One forward
per prompt, no generation.
"""

from __future__ import annotations

import time

import numpy as np

EXPERIMENT = "ontology"
DEFAULT_POSITION = {"faithful": "last_demo_token",
                    "aligned": "last_demo_answer_token"}
FAITHFUL_SINGLE = ("last_demo_token", "separator_after_demo",
                   "first_query_token")


def study_layers(n_layers):
  """The original's layer 14 of 28, scaled to the model (depth 0.5)."""
  from icl_jax.studies.layers import layer_at_fraction

  return [layer_at_fraction(14 / 28, n_layers)]


def check_options(tasks, modes, position) -> list[str]:
  """Sorted unique task names (>= 3, each known) and the position of each
  mode (faithful: a single study position; aligned: a layout set)."""
  from icl_jax.tasks import POSITION_SETS, get_task

  tasks = sorted(set(tasks))
  for t in tasks:
    get_task(t)
  if len(tasks) < 3:
    raise ValueError("--tasks: need at least 3 tasks")
  for m in modes:
    pos = position or DEFAULT_POSITION[m]
    if m == "faithful" and pos not in FAITHFUL_SINGLE:
      raise ValueError(f"--position {pos!r}: faithful mode knows "
                       f"{FAITHFUL_SINGLE}")
    if m == "aligned" and pos not in POSITION_SETS:
      raise ValueError(f"--position {pos!r}: unknown aligned position set")
  return tasks


def position_of(tok, mode, ep, position) -> int:
  """The token index of `position` in one episode's prompt."""
  from icl_jax import tasks as T

  text = ep.prompt().text
  if mode == "faithful":
    return T.get_position_index(tok, text, position)
  lay = T.token_layout(tok, ep.prompt())
  idx = lay.indices(lay.mask(position))
  if len(idx) != 1:
    raise ValueError(f"aligned position {position!r} selects {len(idx)} "
                     "tokens; pick a single-token set")
  return int(idx[0])


def task_vectors(lm, mode, tasks, n, layers, position):
  """{task: [len(layers), D]} mean residual at the position over n prompts."""
  from icl_jax.interventions.engine import Engine
  from icl_jax.tasks import get_task, make_episodes

  engine = Engine(lm)
  out = {}
  for t in tasks:
    eps = make_episodes(get_task(t), n)
    pos = [position_of(lm.tokenizer, mode, e, position) for e in eps]
    resid, _ = engine.capture(prompts=[e.prompt().text for e in eps])
    out[t] = np.stack([resid[l + 1, np.arange(len(eps)), pos].mean(0)
                       for l in layers])
  return out


def layer_rows(lm, *, model, mode, tasks, n, layers, position, regimes,
               permutations) -> list[dict]:
  """One row per layer: the ontology statistics of the task vectors."""
  from tqdm import tqdm

  from icl_jax.analysis import ontology

  vecs = task_vectors(lm, mode, tasks, n, layers, position)
  rows = []
  for i, layer in enumerate(tqdm(layers, desc=f"ontology {mode}",
                                 unit="layer")):
    v = np.stack([vecs[t][i] for t in tasks])
    res = ontology.analyse(tasks, v, regimes, permutations)
    rows.append({
        "experiment": EXPERIMENT, "model": model, "mode": mode,
        "source_task": "all", "target_task": "all", "layer": layer,
        "condition": position, "n": n, "n_layers": lm.n_layers,
        "transfer": None, "preserve": None, "neither": None,
        "vector_norms": {t: float(np.linalg.norm(vecs[t][i]))
                         for t in tasks},
        "examples": [], **res})
  return rows


def run(lm, *, model, modes, tasks, n, layers, position, permutations,
        dtype, out_dir):
  """The missing (mode, layer) rows, the plots and summary.json; returns
  (the rows of `model`, the results directory)."""
  from icl_jax.analysis.plots import ontology_figures
  from icl_jax.analysis.results import RunDir, row_key
  from icl_jax.tasks import get_task

  t0 = time.time()
  config = dict(model=model, tasks=tasks, n=n, position=position,
                permutations=permutations, dtype=dtype)
  rd = RunDir(out_dir, EXPERIMENT, config, lm=lm)
  done = rd.done()
  regimes = {t: get_task(t).spec.regime for t in tasks}
  for mode in modes:
    pos = position or DEFAULT_POSITION[mode]
    todo = [l for l in layers
            if (model, mode, "all", "all", l, pos) not in done]
    if not todo:
      continue
    print(f"[{mode}] task vectors at {pos}: {len(tasks)} tasks x {n} "
          f"prompts, {len(todo)} layers", flush=True)
    rows = layer_rows(lm, model=model, mode=mode, tasks=tasks, n=n,
                      layers=todo, position=pos, regimes=regimes,
                      permutations=permutations)
    rd.append([r for r in rows if row_key(r) not in done])
  rows = [r for r in rd.rows() if r["model"] == model]
  ontology_figures(rows, modes, regimes, rd.path, model,
                   study_layers(lm.n_layers)[0])
  rd.write_summary({"seconds": time.time() - t0, "layers": layers,
                    "n_layers": lm.n_layers, "modes": modes})
  return rows, rd.path


def format_rows(rows, layers, n_layers: int) -> str:
  """Silhouette, permutation p and within/between cosine of the study
  layer (every layer when <= 3 ran)."""
  lines = []
  for r in sorted(rows, key=lambda r: (r["mode"], r["layer"])):
    if r["layer"] in study_layers(n_layers) or len(layers) <= 3:
      sil = "n/a" if r["silhouette"] is None else f"{r['silhouette']:.4f}"
      lines.append(f"{r['mode']:9} L{r['layer']:<3} silhouette {sil} (p "
                   f"{r['perm_p']}), within {r['within']:.3f} vs between "
                   f"{r['between']:.3f}")
  return "\n".join(lines)
