"""Han et al.'s task-vector interventions on their own task families
(spec `han_task_vectors.md` sections 5 and 10), on the public patching API.

Per family, seed and task z (the six tasks; Null only as a vector):
  vector  h_z = mean residual after block `layer` over every demonstration's
          answer-preceding token (the arrow before each demo answer) of
          `n_source` 4-shot prompts of task z (queries from the train split,
          demos from train; seed-dependent draws), i.e. the mean over demos,
          then prompts (equal demos per prompt). Null's vector h_null is the
          negative control.
  targets `n` 4-shot prompts of task z (eval queries, train demos).
  edits   at block `layer`'s output, prefill only, written at
            query  the query's pre-answer token (the prompt's last token: the
                   paper's intervention),
            demos  every demonstration's pre-answer token (section 10 (ii)),
            both   both (section 10 (iii)),
          replace: h <- v; add: h <- h + alpha v (each alpha of the sweep);
          v = h_z (positive) or h_null (negative).
  score   greedy, exact match of the first generated line (`han.score`).
Five seeds by default (replicates: new source and target draws); the
accuracy change vs the clean prompts per task is reported as mean +- std
over seeds.

Rows (DESIGN.md format; mode "aligned": positions from token offsets):
source_task = the vector's task ("none" for the clean run), target_task =
z, layer, condition "<positions>:<edit>[@alpha]:s<seed>" (clean:
"clean:s<seed>"), with family, positions, vector, edit, alpha, seed, n,
accuracy, delta_vs_clean, changed_vs_clean (fraction of outputs that differ
from the clean run's), max_edit (largest |change| of the residual),
examples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

EXPERIMENT = "han_task_vectors"
POSITION_SETS = ("query", "demos", "both")
VECTORS = ("task", "null")
# Depth fraction of the default layer without a TD run: Han et al.'s 4-shot
# TD peaks sit at 0.41 (bitwise) and 0.47 (POS) of Llama-3.1-8B's depth.
DEFAULT_FRACTION = 0.44


def layers_by_family(families, layer: int, td_dir: str, model: str,
                     n_layers: int) -> dict:
  """{family: layer}: `layer` if >= 0, else han_td's 4-shot peak read from
  `td_dir` if given, else the fixed depth fraction (`fixed_layer`)."""
  out = {}
  for f in families:
    if layer >= 0:
      out[f] = layer
    elif td_dir:
      out[f] = peak_layer(td_dir, f, model)
    else:
      out[f] = fixed_layer(n_layers)
  return out


def fixed_layer(n_layers: int) -> int:
  from icl_jax.studies.layers import layer_at_fraction

  return layer_at_fraction(DEFAULT_FRACTION, n_layers)


def peak_layer(td_dir, family: str, model: str, shots: int = 4) -> int:
  """The 4-shot mean-TD peak layer of `family` from a han_td run directory
  (`<out_dir>/han_td`: summary.json results[family].peak_layer, written by
  `studies.han_td`), checked to be of `model`."""
  import json

  path = Path(td_dir) / "summary.json"
  if not path.exists():
    raise ValueError(f"--td_dir: {path} does not exist")
  s = json.loads(path.read_text())
  got = (s.get("config") or {}).get("model", model)
  if got != model:
    raise ValueError(f"{path} is a TD run of {got!r}, not {model!r}")
  try:
    return int(s["results"][family]["peak_layer"][str(shots)])
  except (KeyError, TypeError):
    raise ValueError(f"{path}: no {shots}-shot peak layer for family "
                     f"{family!r}") from None


def parse_arrow_prompt(family: str, prompt: str):
  """The PromptSpec of a `han.prompts` prompt (arrow template), rebuilt
  from its text; ValueError if the text does not round-trip."""
  from icl_jax.tasks import han

  lines = prompt.split("\n")
  demos = [tuple(l.rsplit(" -> ", 1)) for l in lines[:-1]]
  query = lines[-1][:-len(" ->")]
  bad = ValueError(f"not an arrow-template prompt: {prompt!r}")
  if any(len(d) != 2 for d in demos) or not lines[-1].endswith(" ->"):
    raise bad
  spec = han.prompt_spec(family, demos, query)
  if spec.text != prompt:
    raise bad
  return spec


def demo_pre_answer(lm, family: str, prompts) -> list:
  """Per prompt, the token indices [n_demos] of each demonstration's
  answer-preceding token (the one before its first answer token)."""
  from icl_jax.tasks import token_layout

  out = []
  for p in prompts:
    lay = token_layout(lm.tokenizer, parse_arrow_prompt(family, p))
    pos = [int(lay.group(d, "output_value")[0]) - 1
           for d in range(lay.n_demos)]
    out.append(np.asarray(pos, np.int64))
  return out


def task_vector(lm, family: str, prompts, layer: int,
                batch_size: int = 16) -> np.ndarray:
  """[D]: the mean residual after block `layer` over every prompt's demo
  answer-preceding tokens (mean over demos, then over prompts)."""
  import icl_jax

  pos = demo_pre_answer(lm, family, prompts)
  acts = icl_jax.capture(lm, prompts, layers=[layer], batch_size=batch_size)
  per = [v.mean(0) for v in acts.values(layer, [p.tolist() for p in pos])]
  return np.mean(per, axis=0).astype(np.float32)  # [D]


def condition_name(positions: str, edit: str, alpha, seed: int) -> str:
  e = edit if edit == "replace" else f"add@{alpha:g}"
  return f"{positions}:{e}:s{seed}"


def make_patches(lm, family, prompts, layer, vecs, position_sets, alphas):
  """[(fields, Patch)] for every position set x vector x edit."""
  import icl_jax

  demo = [p.tolist() for p in demo_pre_answer(lm, family, prompts)]
  pos = {"query": [-1], "demos": demo,
         "both": [d + [-1] for d in demo]}
  edits = [("replace", None)] + [("add", float(a)) for a in alphas]
  out = []
  for ps in position_sets:
    for vname, v in vecs.items():
      for edit, a in edits:
        patch = (icl_jax.Patch.replace(layer, pos[ps], v) if edit == "replace"
                 else icl_jax.Patch.add(layer, pos[ps], a * v))
        out.append((dict(positions=ps, vector=vname, edit=edit, alpha=a),
                     patch))
  return out


def _row(base, fields, prompts, answers, outs, family, clean, delta=None):
  from icl_jax.tasks import han

  ok = [han.score(family, o, a) for o, a in zip(outs, answers)]
  acc = float(np.mean(ok))
  extra = {} if clean is None else {
      "delta_vs_clean": acc - clean["accuracy"],
      "changed_vs_clean": float(np.mean(
          [o != e["output"] for o, e in zip(outs, clean["examples"])])),
      "max_edit": float(np.max(delta))}
  return {**base, **fields, "accuracy": acc, "n": len(ok),
          "delta_vs_clean": None, **extra,
          "examples": [{"query": p.rsplit("\n", 1)[-1], "output": o,
                        "expected_target": a}
                       for p, o, a in zip(prompts, outs, answers)]}


def task_rows(lm, study, *, family, task, seed, layer, vecs, n, shots,
              position_sets, alphas, max_new_tokens):
  """Rows of one (family, task, seed): the clean run and every patch."""
  import icl_jax
  from icl_jax.tasks import han

  pairs = han.prompts(family, task, n, shots, seed, split="eval")
  prompts, answers = [p for p, _ in pairs], [a for _, a in pairs]
  todo = make_patches(lm, family, prompts, layer,
                      {"task": vecs[task], "null": vecs["null"]},
                      position_sets, alphas)
  res = icl_jax.run_patches(lm, prompts, [p for _, p in todo],
                            max_new_tokens=max_new_tokens, baseline=True)
  base = {"experiment": EXPERIMENT, "model": study.model, "mode": "aligned",
          "family": family, "target_task": task, "layer": layer,
          "seed": seed, "shots": shots}
  clean = _row({**base, "source_task": "none",
                "condition": f"clean:s{seed}"},
               dict(positions=None, vector=None, edit=None, alpha=None),
               prompts, answers, res.clean.texts[0], family, None)
  rows = [clean]
  for k, (fields, _) in enumerate(todo):
    src = task if fields["vector"] == "task" else "null"
    cond = condition_name(fields["positions"], fields["edit"],
                          fields["alpha"], seed)
    rows.append(_row({**base, "source_task": src, "condition": cond}, fields,
                     prompts, answers, res.texts[k], family, clean,
                     res.delta[k]))
  return rows


def edit_label(positions, vector, edit, alpha) -> str:
  e = edit if edit == "replace" else f"add@{alpha:g}"
  return f"{positions}:{vector}:{e}"


def unit_keys(study, *, family, task, seed, layer, position_sets, alphas):
  """The row keys of one (family, task, seed)."""
  keys = [study.key(mode="aligned", source_task="none", target_task=task,
                    layer=layer, condition=f"clean:s{seed}")]
  edits = [("replace", None)] + [("add", float(a)) for a in alphas]
  for ps in position_sets:
    for v in VECTORS:
      for edit, a in edits:
        keys.append(study.key(
            mode="aligned", source_task=task if v == "task" else "null",
            target_task=task, layer=layer,
            condition=condition_name(ps, edit, a, seed)))
  return keys


def family_vectors(lm, study, family, seed, layer, n_source, shots,
                   batch_size) -> dict:
  """{task: [D]} for every task of the family (Null included), from
  `n_source` train-split prompts per task; saved to vectors_<f>_s<seed>.npz."""
  from icl_jax.tasks import han

  vecs = {}
  for t in han.family_tasks(family):
    src = han.prompts(family, t, n_source, shots, 10_000 + seed,
                      split="train")
    vecs[t] = task_vector(lm, family, [p for p, _ in src], layer, batch_size)
  study.rd.save_npz(f"vectors_{family}_s{seed}.npz", layer=np.asarray(layer),
                    **vecs)
  return vecs


def summarize(rows, families) -> dict:
  """Per family: clean accuracy and, per edit label, the accuracy change
  vs clean per task and over tasks (mean +- std over seeds)."""
  out = {}
  for f in families:
    fr = [r for r in rows if r.get("family") == f]
    if not fr:
      continue
    tasks = sorted({r["target_task"] for r in fr})
    clean = {t: [r["accuracy"] for r in fr if r["target_task"] == t
                 and r["source_task"] == "none"] for t in tasks}
    deltas = {}
    for r in fr:
      if r["source_task"] == "none":
        continue
      lab = edit_label(r["positions"], r["vector"], r["edit"], r["alpha"])
      deltas.setdefault(lab, {}).setdefault(r["target_task"], []).append(
          r["delta_vs_clean"])
    ms = lambda xs: {"mean": float(np.mean(xs)), "std": float(np.std(xs)),
                     "n_seeds": len(xs)}
    out[f] = {
        "layer": fr[0]["layer"], "tasks": tasks,
        "clean_accuracy": {t: ms(v) for t, v in clean.items()},
        "delta": {lab: {**{t: ms(v) for t, v in d.items()},
                        "mean_over_tasks": ms(
                            [np.mean(v) for v in d.values()])}
                  for lab, d in deltas.items()}}
  return out


def plot_bars(summary: dict, family: str, path, model: str,
              position_sets) -> None:
  """Accuracy change vs clean per task (mean +- std over seeds): one panel
  per position set, bars per vector x edit."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  s = summary[family]
  tasks = s["tasks"]
  fig, axes = plt.subplots(1, len(position_sets), squeeze=False,
                           figsize=(5.5 * len(position_sets), 3.8))
  for ax, ps in zip(axes[0], position_sets):
    labs = [l for l in s["delta"] if l.startswith(ps + ":")]
    w = 0.8 / max(1, len(labs))
    for j, lab in enumerate(labs):
      d = s["delta"][lab]
      x = np.arange(len(tasks)) + (j - (len(labs) - 1) / 2) * w
      ax.bar(x, [100 * d[t]["mean"] for t in tasks], w,
             yerr=[100 * d[t]["std"] for t in tasks], capsize=2,
             label=lab.split(":", 1)[1])
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(np.arange(len(tasks)), tasks, rotation=30)
    ax.set_title(f"{family}: patched at {ps}, layer {s['layer']}")
    ax.set_ylabel("accuracy change vs clean (pts)")
  axes[0][-1].legend(fontsize=7)
  fig.suptitle(f"{model}: task-vector interventions (mean +- std over "
               "seeds)")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def run(lm, *, model, families, layers: dict, n, n_source, shots, seeds,
        position_sets, alphas, out_dir, max_new_tokens=8, batch_size=16,
        progress=True):
  """Vectors and interventions for every pending (family, seed, task);
  summary.json, intervention_bars_<family>.png. Returns (rows, summary)."""
  from icl_jax.studies.run import Study
  from icl_jax.tasks import han

  config = dict(model=model, families=list(families), layers=layers, n=n,
                n_source=n_source, shots=shots, seeds=list(seeds),
                position_sets=list(position_sets),
                alphas=[float(a) for a in alphas],
                max_new_tokens=max_new_tokens)
  # A later run may add a family or a seed to the directory (its rows are
  # that family's or seed's units; rows already written are never redone).
  study = Study(lm, experiment=EXPERIMENT, model=model, config=config,
                out_dir=out_dir, max_new_tokens=max_new_tokens,
                progress=progress, growable=("families", "layers", "seeds"))
  todo = {}
  for f in families:
    for s in seeds:
      for t in han.family_tasks(f)[:-1]:  # Null: a vector, never a target
        keys = unit_keys(study, family=f, task=t, seed=s, layer=layers[f],
                         position_sets=position_sets, alphas=alphas)
        if study.pending(keys):
          todo.setdefault((f, s), []).append(t)
  study.start(sum(len(v) for v in todo.values()), "task")
  for (f, s), tasks in todo.items():
    vecs = family_vectors(lm, study, f, s, layers[f], n_source, shots,
                          batch_size)
    for t in tasks:
      study.add(task_rows(lm, study, family=f, task=t, seed=s,
                          layer=layers[f], vecs=vecs, n=n, shots=shots,
                          position_sets=position_sets, alphas=alphas,
                          max_new_tokens=max_new_tokens))
      study.tick(note=f"{f}/{t}/s{s}")
  rows = study.rows()
  summary = summarize(rows, study.config["families"])
  for f in summary:
    plot_bars(summary, f, study.path / f"intervention_bars_{f}.png", model,
              position_sets)
  study.finish({"results": summary, "vectors": (
      "mean residual after block `layer` at each demo's answer-preceding "
      "token (the arrow), over n_source train-split prompts x shots demos "
      "per task; Null included")})
  return rows, summary


def format_summary(summary: dict) -> str:
  """Per family: clean accuracy and the mean-over-tasks change per edit."""
  lines = []
  for f, s in summary.items():
    ca = np.mean([v["mean"] for v in s["clean_accuracy"].values()])
    lines.append(f"\n{f} (layer {s['layer']}): clean accuracy {ca:.3f}")
    for lab, d in s["delta"].items():
      m = d["mean_over_tasks"]
      per = " ".join(f"{t}={d[t]['mean']:+.2f}" for t in s["tasks"])
      lines.append(f"  {lab:28s} {m['mean']:+.3f} +- {m['std']:.3f}  {per}")
  return "\n".join(lines)
