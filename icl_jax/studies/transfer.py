"""Source -> target activation transfer sweeps (the study's core protocol),
as plan jobs (`plans.transfer_job`, "transfer" rows, run by `plans.run_jobs`).

One job evaluates a (source task, target task) pair over every requested
layer and position condition as one engine run:

  faithful: the study as it ran (protocol 8.8). N source prompts (source
    demos + source test inputs), positions from the line-based index formula
    (5.2; or `get_position_index` 5.1 / answer tokens 5.3), per-index mean of
    the source activations over the source prompts, written at the same
    *absolute* indices of the target prompts (indices past a target's length
    are skipped), D3 decoding (patched K/V persist) or D2 (`first_token`) for
    single positions; faithful scorers, source-first classification.
  aligned: positions from real token offsets; source token (demo k, role, j)
    goes to target token (demo k, role, j), never into the query; strict
    scorers ("both" reported separately).

Single positions (``last_demo_token``, ``separator_after_demo``,
``first_query_token``) are one token per prompt: the source vector is the
mean over the source prompts of the activation at *each source prompt's own*
index, written at *the target's own* index (protocol 8.3/8.9: the study
replaced "the target's activation at its own last_demo_token"; the jobs'
`own_index`). Aligned mode uses the same rule with the layout's sets (final
answer token of the last demo, the separator after it, the first
query-value token).

Rows follow DESIGN.md's results format.
"""

from __future__ import annotations

from icl_jax.studies import plans
from icl_jax.studies.setups import setup_pairs


def pair_jobs(*, pairs, layers, modes, n: int, conditions,
              on_mismatch: str = "truncate", seed: int = 0) -> list:
  """exp8 and the main job: one transfer job per mode and pair."""
  return [plans.transfer_job(mode, setup, layers, conditions,
                             on_mismatch=on_mismatch, style="transfer",
                             own_index=True)
          for mode in modes for setup in setup_pairs(pairs, n, seed=seed)]


def run_instances(study, *, pairs, layers, modes, n: int,
                  conditions=("answer_tokens",), shared_queries="target",
                  n_source: int = 1, on_mismatch: str = "truncate", k: int = 5,
                  seed: int = 0, extra: dict | None = None):
  """exp13 / exp15: transfer jobs with the instance-level reading
  (`plans.add_instances`) for every pair and mode (D3 / prefill decoding in
  both modes), run in a `run.Study`.

  Source activations come from `n_source` source prompts (the study: one,
  whose query is the first test input of the task named by
  `shared_queries`); `extra` fields are added to every row.
  """
  jobs = []
  for mode in modes:
    setups = setup_pairs(pairs, n, k=k, seed=seed,
                         queries="shared_" + shared_queries,
                         n_source=n_source)
    for setup in setups:
      fields = dict(extra or {})
      fields["source_queries"] = [e.query for e in setup.source_episodes]
      jobs.append(plans.transfer_job(
          mode, setup, layers, conditions, k=k, on_mismatch=on_mismatch,
          extra=fields, style="transfer", own_index=True, instances=True,
          decoder=("prefill", "line")))
  study.run(jobs)


def run_pair_study(lm, *, experiment: str, model: str, out_dir: str, pairs,
                   layers, modes, n: int, conditions, max_new_tokens: int,
                   on_mismatch: str = "truncate", seed: int = 0,
                   timing: str = "prefill", progress: bool = True):
  """Opens `<out_dir>/<experiment>`, runs `pair_jobs`, plots transfer by
  layer and writes summary.json; returns the model's rows."""
  from icl_jax.analysis.plots import transfer_by_layer
  from icl_jax.studies.run import Study

  config = dict(model=model, pairs=[list(p) for p in pairs], layers=layers,
                modes=modes, n=n, conditions=list(conditions),
                max_new_tokens=max_new_tokens, on_mismatch=on_mismatch,
                seed=seed, timing=timing)
  study = Study(lm, experiment=experiment, model=model, config=config,
                out_dir=out_dir, max_new_tokens=max_new_tokens, timing=timing,
                layers=layers, modes=modes, progress=False)
  rows = study.run(pair_jobs(pairs=pairs, layers=layers, modes=modes, n=n,
                             conditions=conditions, on_mismatch=on_mismatch,
                             seed=seed), progress=progress)
  transfer_by_layer(rows, study.path / "transfer_by_layer.png",
                    title=f"{experiment} on {model}")
  study.finish()
  return rows


def mean_by_mode_layer(rows, metric: str = "transfer") -> dict:
  """{"<mode> L<layer>": mean `metric`} over the rows, in row order."""
  from collections import defaultdict

  groups = defaultdict(list)
  for r in rows:
    groups[f"{r['mode']} L{r['layer']}"].append(r[metric])
  return {k: sum(v) / len(v) for k, v in groups.items()}
