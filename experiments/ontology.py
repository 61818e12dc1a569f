r"""exp6: task ontology from task vectors (protocol 8.6).

    python experiments/ontology.py --model=gemma3-270m --layers=study

Per task (the 8 core tasks, `--tasks`), N prompts (fixed demos + the first
RNG call's test inputs); the task vector at a layer is the mean over the
prompts of the residual after that block at one position:

  faithful: the study's `last_demo_token` (`get_position_index`: on Llama
            and Gemma the "\n\n" separator before the query -- identical for
            every prompt of a task);
  aligned:  the last demo's final answer token (`last_demo_answer_token`).

`--position` overrides (faithful: last_demo_token, separator_after_demo,
first_query_token; aligned: any layout position set with one token).

Per (mode, layer): cosine similarity matrix (tasks alphabetical), average
linkage on cosine distance (as run; the paper says Ward), PCA (2/3 comps),
silhouette (cosine) w.r.t. the 6 regime labels with a 1000-permutation test
(RandomState(42)), mean within- vs between-regime cosine. Every layer by
default; the original used layer 14 of 28 (`--layers=study` = depth 0.5).

No generation: one forward per prompt. Rows (one per mode x layer) carry
the statistics; plots: silhouette_by_layer.png, similarity_<mode>.png,
pca_<mode>.png at the study layer.
"""

from __future__ import annotations

import time

from absl import app, flags

from experiments import common
from icl_jax.tasks import CORE_TASKS

common.define_model_flags(
    10, "prompts per task",
    layers_help="'all', 'study' (depth 0.5, the original's layer 14 of 28) "
                "or a comma list",
    seed_help="unused (fixed demos); kept for the common flag set")
flags.DEFINE_list("tasks", list(CORE_TASKS), "tasks (>= 3)")
flags.DEFINE_string("position", None, "position override (see docstring)")
flags.DEFINE_integer("permutations", 1000, "label permutations",
                     lower_bound=1)
F = flags.FLAGS
EXPERIMENT = "ontology"
DEFAULT_POSITION = {"faithful": "last_demo_token",
                    "aligned": "last_demo_answer_token"}
FAITHFUL_SINGLE = ("last_demo_token", "separator_after_demo",
                   "first_query_token")


def study_layers(n_layers):
  from icl_jax.studies.layers import layer_at_fraction

  return [layer_at_fraction(14 / 28, n_layers)]


def position_of(tok, mode, ep, position):
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
  import numpy as np

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


def main(argv):
  del argv
  import numpy as np

  import icl_jax
  from icl_jax.analysis import figures, ontology, reference
  from icl_jax.analysis.results import RunDir, hold_run_dir, row_key
  from icl_jax.studies import study, layers, modes
  from icl_jax.tasks import get_task

  study.quiet_logs()
  t0 = time.time()
  modes = modes.parse_modes(F.mode)
  n = study.check_positive(F.n, "--n")
  tasks = sorted(set(F.tasks))
  for t in tasks:
    get_task(t)
  if len(tasks) < 3:
    raise ValueError("--tasks: need at least 3 tasks")
  for m in modes:
    pos = F.position or DEFAULT_POSITION[m]
    if m == "faithful" and pos not in FAITHFUL_SINGLE:
      raise ValueError(f"--position {pos!r}: faithful mode knows "
                       f"{FAITHFUL_SINGLE}")
    if m == "aligned":
      from icl_jax.tasks import POSITION_SETS
      if pos not in POSITION_SETS:
        raise ValueError(f"--position {pos!r}: unknown aligned position set")
  layers.check_layers_early(F.layers, F.model, study_layers)
  hold_run_dir(F.out_dir, EXPERIMENT)  # a second process is refused at once
  lm = icl_jax.load(F.model, dtype=F.dtype)
  layers = layers.parse_layers(F.layers, lm.n_layers, study_layers)
  config = dict(model=F.model, tasks=tasks, n=n, position=F.position,
                permutations=F.permutations, dtype=F.dtype)
  rd = RunDir(F.out_dir, EXPERIMENT, config, lm=lm)
  done = rd.done()
  regimes = {t: get_task(t).spec.regime for t in tasks}
  for mode in modes:
    pos = F.position or DEFAULT_POSITION[mode]
    todo = [l for l in layers
            if (F.model, mode, "all", "all", l, pos) not in done]
    if not todo:
      continue
    print(f"[{mode}] task vectors at {pos}: {len(tasks)} tasks x {n} "
          f"prompts, {len(todo)} layers", flush=True)
    vecs = task_vectors(lm, mode, tasks, n, todo, pos)
    rows = []
    from tqdm import tqdm

    for i, layer in enumerate(tqdm(todo, desc=f"ontology {mode}",
                                   unit="layer")):
      v = np.stack([vecs[t][i] for t in tasks])
      res = ontology.analyse(tasks, v, regimes, F.permutations)
      rows.append({
          "experiment": EXPERIMENT, "model": F.model, "mode": mode,
          "source_task": "all", "target_task": "all", "layer": layer,
          "condition": pos, "n": n, "n_layers": lm.n_layers,
          "transfer": None, "preserve": None, "neither": None,
          "vector_norms": {t: float(np.linalg.norm(vecs[t][i]))
                           for t in tasks},
          "examples": [], **res})
    rd.append([r for r in rows if row_key(r) not in done])
  rows = [r for r in rd.rows() if r["model"] == F.model]
  # Plots.
  curves = {}
  for mode in modes:
    rs = sorted((r for r in rows if r["mode"] == mode), key=lambda r:
                r["layer"])
    if not rs:
      continue
    curves[f"silhouette ({mode})"] = ([r["layer"] for r in rs],
                                      [r["silhouette"] or 0 for r in rs])
    curves[f"within-between cosine ({mode})"] = (
        [r["layer"] for r in rs], [r["within"] - r["between"] for r in rs])
    at = study_layers(lm.n_layers)[0]
    pick = min(rs, key=lambda r: abs(r["layer"] - at))
    figures.heatmap(pick["similarity"], pick["tasks"], pick["tasks"],
                    rd.path / f"similarity_{mode}.png",
                    title=f"task-vector cosine, {mode}, L{pick['layer']} "
                          f"({F.model})", vmin=min(0.0, min(
                              min(x) for x in pick["similarity"])),
                    xlabel="task", ylabel="task")
    figures.points_2d(pick["pca"], rd.path / f"pca_{mode}.png",
                      title=f"PCA of task vectors, {mode}, L{pick['layer']}",
                      groups=regimes)
  figures.curves({"exp6 structure by layer": curves},
                 rd.path / "silhouette_by_layer.png", "layer", "value",
                 title=f"exp6 on {F.model} (reference Llama-3B L14: "
                       f"silhouette {reference.EXP6['silhouette']}, within-"
                       f"between {reference.EXP6['within'] - reference.EXP6['between']:.3f})",
                 ylim=None)
  rd.write_summary({"seconds": time.time() - t0, "layers": layers,
                    "n_layers": lm.n_layers, "modes": modes})
  for r in sorted(rows, key=lambda r: (r["mode"], r["layer"])):
    if r["layer"] in study_layers(lm.n_layers) or len(layers) <= 3:
      sil = "n/a" if r["silhouette"] is None else f"{r['silhouette']:.4f}"
      print(f"{r['mode']:9} L{r['layer']:<3} silhouette {sil} (p "
            f"{r['perm_p']}), within {r['within']:.3f} vs between "
            f"{r['between']:.3f}")
  print(f"results under {rd.path.resolve()}")


if __name__ == "__main__":
  app.run(main)
