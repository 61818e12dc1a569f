r"""Attribution patching (AtP) vs exact patching: agreement and time.

    python benchmarks/attribution.py --model=gemma3-270m --n=4

For one exp8 pair (default uppercase -> repeat_word: source prompts of the
source task, target prompts of the target task, each with its own demos and
queries), the metric is log p(source-task answer) - log p(target-task
answer) at the first generated position of the target prompt (first tokens
of " " + answer). Source activations go to the same absolute token index
(faithful-style; positions past the source's end are skipped).

Compared, per prompt, estimate vs exact effect (the engine, max_new_tokens
1, answer log-probs): (a) residual, single positions x layers (positions:
--positions), (b) each head x layer, patched at the demo output-value
positions together, (c) each MLP x layer at those positions. Reported:
Pearson and Spearman correlations and the overlap of the top-20 by |effect|
(over all (cell, prompt) values of a family), and wall times of the
one-pass estimate (cold = with compile, warm) beside the exact sweep (one
pass, compile included; the same sweep twice would double the cost). The
residual family is also scored with AtP*'s QK fix (qk_fix=True).

Results of each model go to its entry under "runs" in --out (other models'
entries are kept), with statistics pooled over the pairs; --plots (a
directory) gets, per (model, pair), a figure of where the estimate and the
exact effect disagree (figures.estimate_vs_exact) and the raw values
(.npz: estimate and exact per family, [rows, cols, prompts]).

    for m in gemma3-270m smollm2-135m qwen2.5-0.5b; do
      python benchmarks/attribution.py --model=$m --n=10 \
          --pairs=uppercase:repeat_word,uppercase:first_letter,sentiment:antonym
    done
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from absl import app, flags

import icl_jax
from icl_jax import tasks as T
from icl_jax.analysis.figures import estimate_vs_exact
from icl_jax.analysis.stats import spearman
from icl_jax.interventions.attribution import attribution_patching
from icl_jax.studies.setups import setup_pairs

F = flags.FLAGS
flags.DEFINE_string("model", "gemma3-270m", "embedded name or model dir")
flags.DEFINE_string("pairs", "uppercase:repeat_word", "source:target,...")
flags.DEFINE_integer("n", 4, "target prompts (and source prompts)")
flags.DEFINE_string("positions", "output_line", "layout set of the single-"
                    "position sweep (or 'all' for every token)")
flags.DEFINE_string("out", "benchmarks/results/attribution.json", "output")
flags.DEFINE_string("plots", "benchmarks/results/attribution",
                    "directory for the disagreement figures and raw values "
                    "('' for none)")

FAMILIES = ("resid_single_position_x_layer",
            "resid_single_position_x_layer_qk_fix",
            "head_x_layer_at_outputs", "mlp_x_layer_at_outputs")


def first_token(tok, text):
  return tok(" " + text, add_special_tokens=False)["input_ids"][0]


def stats(est, exact, k=20):
  est, exact = np.ravel(est), np.ravel(exact)
  top = lambda a: set(np.argsort(-np.abs(a))[:k].tolist())
  return {"pearson": float(np.corrcoef(est, exact)[0, 1]),
          # tie-averaged ranks (exact effects of 0 tie in many cells)
          "spearman": spearman(est, exact),
          f"top{k}_overlap": len(top(est) & top(exact)) / k,
          "n_values": int(est.size),
          "max_abs_exact": float(np.abs(exact).max()),
          "max_abs_error": float(np.abs(est - exact).max())}


def exact_effects(lm, targets, acts, patches_of, answers):
  """Exact metric change of each patch family on every prompt [K,N]."""
  t0 = time.perf_counter()
  pats = patches_of(acts)
  out = icl_jax.run_patches(lm, targets, pats, max_new_tokens=1,
                            answer_tokens=answers, baseline=True)
  lp, clean = out.answer_logprobs, out.clean.answer_logprobs[0]
  eff = (lp[..., 0] - lp[..., 1]) - (clean[:, 0] - clean[:, 1])[None]
  return eff, time.perf_counter() - t0


def run_pair(lm, src_task, tgt_task):
  tok, L, H = lm.tokenizer, lm.config.n_layers, lm.config.n_heads
  setup = setup_pairs([(src_task, tgt_task)], F.n)[0]
  targets = [e.prompt().text for e in setup.target_episodes]
  sources = [e.prompt().text for e in setup.source_episodes]
  src_obj = T.get_task(src_task)
  answers = [[first_token(tok, src_obj.answer(e.query)),
              first_token(tok, e.expected)] for e in setup.target_episodes]
  lay = T.token_layout(tok, setup.target_episodes[0].prompt())
  out_pos = lay.indices(lay.mask("output_only")).tolist()
  single = (list(range(len(lay.records))) if F.positions == "all" else
            lay.indices(lay.mask(F.positions)).tolist())
  lens = [len(tok(s)["input_ids"]) for s in sources]
  single = [t for t in single if t < min(lens)]
  out_pos = [t for t in out_pos if t < min(lens)]
  times = {}
  t0 = time.perf_counter()
  att = attribution_patching(lm, targets, sources, [a[0] for a in answers],
                             [a[1] for a in answers])
  times["estimate_cold_s"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  att = attribution_patching(lm, targets, sources, [a[0] for a in answers],
                             [a[1] for a in answers])
  times["estimate_warm_s"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  att_qk = attribution_patching(lm, targets, sources, [a[0] for a in answers],
                                [a[1] for a in answers], qk_fix=True)
  times["estimate_qk_fix_cold_s"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  acts = icl_jax.capture(lm, sources, layers="all",
                         sites=["head_out", "mlp_out"])
  times["exact_capture_s"] = time.perf_counter() - t0
  lays = list(range(-1, L))
  res_eff, times["exact_resid_s"] = exact_effects(
      lm, targets, acts, lambda a: [icl_jax.Patch.replace(
          l, [t], [v for v in a.values(l, [t])]) for l in lays
          for t in single], answers)
  head_eff, times["exact_heads_s"] = exact_effects(
      lm, targets, acts, lambda a: [icl_jax.Patch.replace(
          l, out_pos, a.values(l, out_pos, "head_out", h), site="head_out",
          heads=h) for l in range(L) for h in range(H)], answers)
  mlp_eff, times["exact_mlps_s"] = exact_effects(
      lm, targets, acts, lambda a: [icl_jax.Patch.replace(
          l, out_pos, a.values(l, out_pos, "mlp_out"), site="mlp_out")
          for l in range(L)], answers)
  est_res = np.stack([att.resid[l + 1][:, t] for l in lays for t in single])
  est_qk = np.stack([att_qk.resid[l + 1][:, t] for l in lays
                     for t in single])
  sets = [out_pos] * len(targets)
  est_head = np.transpose(att.over("head_out", sets), (0, 2, 1)).reshape(
      L * H, -1)
  est_mlp = att.over("mlp_out", sets)
  n_exact = (len(lays) * len(single) + L * H + L) * len(targets)
  exact_s = sum(v for k, v in times.items() if k.startswith("exact_"))
  N = len(targets)
  # [rows, cols, prompts] per family, rows = layers.
  values = {
      FAMILIES[0]: (est_res.reshape(len(lays), len(single), N),
                    res_eff.reshape(len(lays), len(single), N)),
      FAMILIES[1]: (est_qk.reshape(len(lays), len(single), N),
                    res_eff.reshape(len(lays), len(single), N)),
      FAMILIES[2]: (est_head.reshape(L, H, N), head_eff.reshape(L, H, N)),
      FAMILIES[3]: (est_mlp.reshape(L, 1, N), mlp_eff.reshape(L, 1, N)),
  }
  result = {"pair": f"{src_task}->{tgt_task}", "n_prompts": N,
            "single_positions": single, "output_positions": out_pos,
            "clean_metric": att.metric.tolist(),
            **{f: stats(*v) for f, v in values.items()},
            "exact_patched_forwards": n_exact, "times_s": times,
            "speedup_warm_estimate_vs_exact": exact_s / times[
                "estimate_warm_s"]}
  if F.plots:
    # str + suffix: Path.with_suffix would cut "qwen2.5-0.5b_..." at ".5b".
    stem = str(Path(F.plots) / f"{F.model}_{src_task}-{tgt_task}")
    np.savez_compressed(stem + ".npz", **{
        f"{f}/{kind}": v[i] for f, v in values.items()
        for i, kind in enumerate(("estimate", "exact"))})
    # family -> (panel name, row labels, column labels, column axis label)
    panels = {FAMILIES[0]: ("residual, single positions", list(lays), single,
                            "position (token)"),
              FAMILIES[2]: ("heads (at demo outputs)", list(range(L)),
                            list(range(H)), "head"),
              FAMILIES[3]: ("MLPs (at demo outputs)", list(range(L)),
                            ["mlp"], "")}
    estimate_vs_exact(
        {name: {"estimate": values[f][0], "exact": values[f][1],
                "rows": rows, "cols": cols, "col_label": col_label}
         for f, (name, rows, cols, col_label) in panels.items()},
        stem + ".png",
        title=f"{F.model}, {src_task} -> {tgt_task}, N={N}: attribution "
              "patching vs exact patching (metric: log p(src) - log p(tgt))")
    result["figure"] = stem + ".png"
  return result, values


def pooled(per_pair_values):
  """Statistics over the values of every pair together, per family."""
  out = {}
  for f in FAMILIES:
    est = np.concatenate([v[f][0].ravel() for v in per_pair_values])
    exact = np.concatenate([v[f][1].ravel() for v in per_pair_values])
    out[f] = stats(est, exact)
  return out


def main(argv):
  del argv
  lm = icl_jax.load(F.model)
  pairs = [p.split(":") for p in F.pairs.split(",")]
  if F.plots:
    Path(F.plots).mkdir(parents=True, exist_ok=True)
  done = [run_pair(lm, s, t) for s, t in pairs]
  results = [r for r, _ in done]
  run = {"model": F.model,
         "command": "python benchmarks/attribution.py " + " ".join(
             f"--{k}={getattr(F, k)}" for k in ("model", "pairs", "n",
                                                 "positions")),
         "machine": {"platform": platform.platform(),
                     "cpus": os.cpu_count(),
                     "loadavg": os.getloadavg()},
         "pooled_over_pairs": pooled([v for _, v in done]),
         "pairs": results}
  out = Path(F.out)
  doc = json.loads(out.read_text()) if out.exists() else {}
  if "runs" not in doc:  # a file of the earlier one-model format
    doc = {}
  doc.update({"benchmark": "attribution",
              "metric": "log p(source answer) - log p(target answer), first "
                        "generated position; exact = engine patch (max_new "
                        "1)"})
  doc.setdefault("runs", {})[F.model] = run
  out.write_text(json.dumps(doc, indent=1))
  print(json.dumps(run, indent=1))


if __name__ == "__main__":
  app.run(main)
