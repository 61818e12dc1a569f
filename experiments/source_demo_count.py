r"""exp30: fewer source demos (protocol 8.22).

    python experiments/source_demo_count.py --model=gemma3-270m --layers=study

Pairs uppercase->repeat_word, uppercase->length, repeat_word->length. The
source prompt has k in {1,2,3,5} demos (`--source_k`), the target always 5;
source prompts use the *target's* test inputs as queries; N=20; `all_demo`.

faithful: the line-based indices of the k-demo source prompt, written at the
same absolute indices of the 5-demo target -- so only about the first k demo
regions of the target are patched (the original's confound: source demo
count and patched extent change together);
aligned: source demo j -> target demo j for j < k (the same extent, but
token-exact).

`--pad_source_demos` adds a control the original lacks: the first k demos of
the source are followed by the *target's* remaining 5-k demos, so the
patched extent is constant and only the number of source-task demos varies
(condition "all_demo/padded"; aligned mode only patches the k source demos).

Rows carry `source_k`; plot transfer_by_layer.png (one line per k).
"""

from __future__ import annotations

from absl import app, flags

from experiments import common
from icl_jax.studies.scoring import TaskScoring

PAIRS = (("uppercase", "repeat_word"), ("uppercase", "length"),
         ("repeat_word", "length"))
common.define_common_flags(default_pairs=PAIRS, default_n=20)
flags.DEFINE_string("source_k", "1,2,3,5", "source demo counts (1..5)")
flags.DEFINE_boolean("pad_source_demos", False,
                     "also run the constant-extent control (see docstring)")
common.define_on_mismatch_flag()
F = flags.FLAGS
EXPERIMENT = "source_demo_count"


def k_setup(setup, k: int, padded: bool):
  """The pair's setup with k source demos (same queries)."""
  import dataclasses

  from icl_jax.tasks import Episode

  eps = []
  for s_ep, t_ep in zip(setup.source_episodes, setup.target_episodes):
    demos = tuple(s_ep.demos[:k])
    if padded:
      demos = demos + tuple(t_ep.demos[k:])
    eps.append(Episode(s_ep.task, demos, s_ep.query, s_ep.expected))
  return dataclasses.replace(setup, source_episodes=eps)


def k_job(mode, setup, layers, ks, padded, on_mismatch):
  """One job per (mode, pair): all k x layers cells on one target set."""
  from icl_jax.studies import plans, positions, layers

  cond = "all_demo/padded" if padded else "all_demo"
  cells = [{"layer": int(l), "condition": cond, "source_k": int(k)}
           for k in ks for l in layers]
  scoring = TaskScoring(setup.source_task, setup.target_task)

  def build(engine, targets, todo):
    out, cache = [], {}
    for c in todo:
      k = c["source_k"]
      if k not in cache:
        sub = k_setup(setup, k, padded)
        resid, lengths = plans.capture_sources(engine, sub.source_episodes)
        if mode == "faithful":
          pm = positions.faithful_map(
              engine.lm.tokenizer,
              [e.prompt().text for e in sub.source_episodes], "all_demo",
              targets.slots, lengths, k=len(sub.source_episodes[0].demos))
        else:
          pm = positions.aligned_map(engine.lm.tokenizer, sub.source_episodes,
                                 setup.target_episodes, "all_demo",
                                 on_mismatch)
          if padded:  # patch only the k source-task demos
            keep = set()
            lay = positions.layout(engine.lm.tokenizer, sub.source_episodes[0])
            for r in lay.records:
              if r.segment == "demo" and r.demo < k:
                keep.add(r.index)
            pm = pm.select(keep)
        cache[k] = (resid, pm)
      resid, pm = cache[k]
      out.append(plans.replace_plan(resid, c["layer"], c["condition"], pm,
                                    source_k=k))
    return out

  return plans.Job(mode, setup, scoring, cells, build,
                   f"{setup.source_task} -> {setup.target_task} "
                   f"(k={','.join(map(str, ks))}{', padded' if padded else ''})")


def main(argv):
  del argv
  from icl_jax.analysis.plots import transfer_by_layer
  from icl_jax.studies import study, setups, layers

  modes, pairs, n = common.parse_pair_flags()
  ks = study.parse_ints(F.source_k, "--source_k", 1, 5)
  st = common.open_pair_study(
      EXPERIMENT, modes, pairs, n,
      dict(source_k=ks, pad_source_demos=F.pad_source_demos),
      study_layers=layers.study_fraction_layer, key_extra=("source_k",))
  jobs = []
  for mode in modes:
    for setup in setups.setup_pairs(pairs, n, queries="target", seed=F.seed):
      jobs.append(k_job(mode, setup, st.layers, ks, False, F.on_mismatch))
      if F.pad_source_demos:
        jobs.append(k_job(mode, setup, st.layers, ks, True, F.on_mismatch))
  rows = st.run(jobs)
  plot_rows = [dict(r, condition=f"{r['condition']} k={r['source_k']}")
               for r in rows]
  transfer_by_layer(plot_rows, st.path / "transfer_by_layer.png",
                    title=f"exp30 source demo count on {F.model}")
  table = summarize(rows)
  st.finish({"mean_by_k": table})
  for t in table:
    print(f"{t['mode']:9} {t['condition']:16} k={t['source_k']} best layer "
          f"{t['best_layer']:>3}: mean transfer {t['mean_transfer']:.3f} "
          f"(n_positions {t['n_positions']})")
  print(f"results under {st.path.resolve()}")


def summarize(rows):
  from collections import defaultdict

  g = defaultdict(lambda: defaultdict(list))
  for r in rows:
    g[(r["mode"], r["condition"], r["source_k"])][r["layer"]].append(r)
  out = []
  for (mode, cond, k), by_layer in sorted(g.items()):
    means = {l: sum(r["transfer"] for r in rs) / len(rs)
             for l, rs in by_layer.items()}
    best = max(sorted(means), key=lambda l: means[l])
    out.append({"mode": mode, "condition": cond, "source_k": k,
                "best_layer": best, "mean_transfer": means[best],
                "by_layer": means,
                "n_positions": sorted({r["n_positions"]
                                       for r in by_layer[best]})})
  return out


if __name__ == "__main__":
  app.run(main)
