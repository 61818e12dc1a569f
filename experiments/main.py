r"""The main job: multi- vs single-position transfer, every layer, both modes.

    python -m experiments.main                 # gemma3-270m, N=20, 6 pairs
    python -m experiments.main --model=smollm2-135m --out_dir=runs/smollm2

For the study's six exp8 pairs, over every layer, in faithful and aligned
mode, with N target prompts per pair:

  multi-position:  all_demo and output_only conditions (patched prompt
                   forward, K/V persist: the study's D3 decoder);
  single-position: the last demo answer position ("last_demo_token"; in
                   faithful mode the study's own definition, which is the
                   "\n\n" separator on Gemma) with the same decoder
                   (like-for-like), and in faithful mode also with the
                   study's D2 decoder (only the first generated token sees
                   the patch).

Prints a summary (per mode and condition: the best layer by mean transfer
over the pairs, its depth fraction, pooled transfer and preserve with Wilson
95% intervals) and writes results + plots under --out_dir.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import common  # noqa: E402
from experiments import multi_position  # noqa: E402,F401  (defines flags)

flags.DEFINE_boolean("d2", True, "also run faithful single-position with the "
                     "study's D2 decoder")
F = flags.FLAGS
F.set_default("n", 20)

MULTI = ("all_demo", "output_only")
SINGLE = ("last_demo_token",)


def summarize(rows, n_layers: int) -> list[dict]:
  """Per (mode, condition, timing): best layer by mean transfer over pairs."""
  from collections import defaultdict

  from icl_jax.analysis.stats import wilson_interval

  groups = defaultdict(lambda: defaultdict(list))
  for r in rows:
    groups[(r["mode"], r["condition"], r["timing"])][r["layer"]].append(r)
  out = []
  for (mode, cond, timing), by_layer in sorted(groups.items()):
    def mean_t(layer):
      rs = by_layer[layer]
      return sum(r["transfer"] for r in rs) / len(rs)

    best = max(sorted(by_layer), key=mean_t)
    rs = by_layer[best]
    if mean_t(best) == 0:
      # No transfer at any layer: there is no best layer; pool every layer.
      best = None
      rs = [r for layer in by_layer for r in by_layer[layer]]
    n = sum(r["n"] for r in rs)
    k_t = round(sum(r["transfer"] * r["n"] for r in rs))
    k_p = round(sum(r["preserve"] * r["n"] for r in rs))
    head = [r for r in rs if (r["source_task"], r["target_task"]) ==
            ("uppercase", "repeat_word")]
    head_t = (sum(r["transfer"] for r in head) / len(head)) if head else None
    out.append({
        "mode": mode, "condition": cond, "timing": timing,
        "best_layer": best,
        "depth_fraction": None if best is None else best / n_layers,
        "pairs": len(rs), "n": n, "transfer": k_t / n,
        "transfer_ci": wilson_interval(k_t, n), "preserve": k_p / n,
        "preserve_ci": wilson_interval(k_p, n),
        "max_cell_transfer": max(r["transfer"] for l in by_layer
                                 for r in by_layer[l]),
        "headline_pair_transfer": head_t,
    })
  return out


def print_summary(summary, model: str, n_layers: int) -> str:
  lines = [f"Transfer summary for {model} ({n_layers} layers; 'layer L' = "
           "output of block L, depth = L / n_layers).",
           "Best layer = highest mean transfer over the pairs; rates pooled "
           "over the pairs at that layer, Wilson 95% intervals.",
           "", f"{'mode':9} {'condition':16} {'decoder':11} {'best L':>6} "
           f"{'depth':>5} {'transfer [95% CI]':>22} {'preserve [95% CI]':>22}"
           f" {'max cell':>8} {'up->rep':>7}"]
  for s in summary:
    dec = {"prefill": "D3/prefill", "first_token": "D2/1st tok"}.get(
        s["timing"], s["timing"])
    ci = s["transfer_ci"]
    pci = s["preserve_ci"]
    head = ("" if s["headline_pair_transfer"] is None
            else f"{s['headline_pair_transfer']:.2f}")
    best = "none" if s["best_layer"] is None else str(s["best_layer"])
    depth = ("all" if s["depth_fraction"] is None
             else f"{s['depth_fraction']:.2f}")
    lines.append(
        f"{s['mode']:9} {s['condition']:16} {dec:11} {best:>6} "
        f"{depth:>5} {s['transfer']:>6.3f} "
        f"[{ci[0]:.3f}, {ci[1]:.3f}] {s['preserve']:>6.3f} "
        f"[{pci[0]:.3f}, {pci[1]:.3f}] {s['max_cell_transfer']:>8.2f} "
        f"{head:>7}")
  lines += ["", "multi-position = all_demo / output_only; single-position = "
            "last_demo_token (faithful: the study's index, the '\\n\\n' "
            "separator on Gemma; aligned: the last demo's final answer "
            "token). up->rep = uppercase->repeat_word at the best layer. "
            "best L 'none': zero transfer at every layer; its rates are "
            "pooled over all layers."]
  text = "\n".join(lines)
  print(text)
  return text


def main(argv):
  del argv
  import json

  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.WARNING)
  t0 = time.time()
  pairs = common.parse_pairs(F.pairs)
  mode_list = common.modes(F.mode)
  from icl_jax.analysis.plots import transfer_by_layer
  from icl_jax.interventions import study

  study.check_positive(F.n, "--n")
  study.check_positive(F.max_new_tokens, "--max_new_tokens")
  lm = common.load_model(
      "main_prefill", *(["main_single_d2"] if F.d2 and "faithful" in mode_list
                        else []))
  layers = common.parse_layers(F.layers, lm.n_layers)
  kw = dict(model=F.model, pairs=pairs, layers=layers, n=F.n,
            out_dir=F.out_dir, max_new_tokens=F.max_new_tokens,
            on_mismatch=F.on_mismatch, seed=F.seed)
  rows = multi_position.run(lm, mode_list=mode_list,
                            conditions=MULTI + SINGLE,
                            experiment="main_prefill", timing="prefill", **kw)
  if F.d2 and "faithful" in mode_list:
    rows += multi_position.run(lm, mode_list=["faithful"], conditions=SINGLE,
                               experiment="main_single_d2",
                               timing="first_token", **kw)
  summary = summarize(rows, lm.n_layers)
  text = print_summary(summary, F.model, lm.n_layers)
  out = Path(F.out_dir)
  (out / "main_summary.txt").write_text(text + "\n")
  (out / "main_summary.json").write_text(json.dumps(
      {"model": F.model, "dtype": str(lm.dtype), "n_layers": lm.n_layers,
       "n": F.n,
       "pairs": [list(p) for p in pairs], "summary": summary,
       "seconds": time.time() - t0}, indent=1))
  transfer_by_layer(rows, out / "main_transfer_by_layer.png",
                    title=f"transfer by layer, {F.model} (N={F.n})")
  print(f"\nresults and plots under {out.resolve()} "
        f"({time.time() - t0:.0f}s)")


if __name__ == "__main__":
  app.run(main)
