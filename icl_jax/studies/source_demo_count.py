"""exp30: fewer source demos (protocol 8.22)
(`experiments/source_demo_count.py`): the source prompt has k demos, the
target always 5; all_demo transfer per k (faithful: the k-demo source's
line-based indices at the same absolute target indices; aligned: source demo
j -> target demo j). The padded control keeps the patched extent constant
(the target's remaining demos follow the k source demos; aligned mode
patches only the k source demos).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

from icl_jax.studies import plans, positions
from icl_jax.studies.scoring import TaskScoring


def k_setup(setup, k: int, padded: bool):
  """The pair's setup with k source demos (same queries)."""
  from icl_jax.tasks import Episode

  eps = []
  for s_ep, t_ep in zip(setup.source_episodes, setup.target_episodes):
    demos = tuple(s_ep.demos[:k])
    if padded:
      demos = demos + tuple(t_ep.demos[k:])
    eps.append(Episode(s_ep.task, demos, s_ep.query, s_ep.expected))
  return dataclasses.replace(setup, source_episodes=eps)


def _k_map(engine, mode, setup, sub, targets, lengths, k, padded,
           on_mismatch):
  """The all_demo position map of the k-demo source setup `sub`."""
  tok = engine.lm.tokenizer
  if mode == "faithful":
    return positions.faithful_map(
        tok, [e.prompt().text for e in sub.source_episodes], "all_demo",
        targets.slots, lengths, k=len(sub.source_episodes[0].demos))
  pm = positions.aligned_map(tok, sub.source_episodes,
                             setup.target_episodes, "all_demo", on_mismatch)
  if padded:  # patch only the k source-task demos
    keep = set()
    lay = positions.layout(tok, sub.source_episodes[0])
    for r in lay.records:
      if r.segment == "demo" and r.demo < k:
        keep.add(r.index)
    pm = pm.select(keep)
  return pm


def k_job(mode, setup, layers, ks, padded, on_mismatch) -> plans.Job:
  """One job per (mode, pair): all k x layers cells on one target set."""
  cond = "all_demo/padded" if padded else "all_demo"
  cells = [{"layer": int(l), "condition": cond, "source_k": int(k)}
           for k in ks for l in layers]
  scoring = TaskScoring(setup.source_task, setup.target_task)

  def build(engine, targets, todo):
    """The plans of the pending cells (one capture per k)."""
    out, cache = [], {}
    for c in todo:
      k = c["source_k"]
      if k not in cache:
        sub = k_setup(setup, k, padded)
        resid, lengths = plans.capture_sources(engine, sub.source_episodes)
        cache[k] = (resid, _k_map(engine, mode, setup, sub, targets,
                                  lengths, k, padded, on_mismatch))
      resid, pm = cache[k]
      out.append(plans.replace_plan(resid, c["layer"], c["condition"], pm,
                                    source_k=k))
    return out

  return plans.Job(mode, setup, scoring, cells, build,
                   f"{setup.source_task} -> {setup.target_task} "
                   f"(k={','.join(map(str, ks))}{', padded' if padded else ''})")


def build_jobs(modes, pairs, n, layers, ks, pad, seed,
               on_mismatch) -> list[plans.Job]:
  """The k jobs (and with `pad` the padded ones) of every (mode, pair);
  source prompts use the target's test inputs."""
  from icl_jax.studies import setups

  jobs = []
  for mode in modes:
    for setup in setups.setup_pairs(pairs, n, queries="target", seed=seed):
      jobs.append(k_job(mode, setup, layers, ks, False, on_mismatch))
      if pad:
        jobs.append(k_job(mode, setup, layers, ks, True, on_mismatch))
  return jobs


def summarize(rows) -> list[dict]:
  """Per (mode, condition, k): the best layer by mean transfer over the
  pairs, the means by layer and the position counts there."""
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


def format_table(table) -> str:
  """One line per `summarize` entry."""
  return "\n".join(
      f"{t['mode']:9} {t['condition']:16} k={t['source_k']} best layer "
      f"{t['best_layer']:>3}: mean transfer {t['mean_transfer']:.3f} "
      f"(n_positions {t['n_positions']})" for t in table)
