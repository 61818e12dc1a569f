r"""exp33: variable-length tasks (protocol 8.25).

    python experiments/variable_length.py --model=gemma3-270m --layers=study

Part A (condition "baseline"): clean accuracy of repeat_n, spell_out,
repeat_word, uppercase, length.
Part B: `all_demo` transfer for repeat_n<->repeat_word, uppercase<->repeat_n,
spell_out<->length; source prompts use the target's test inputs; N=15;
every layer (default) or `--layers=study` (the original's layers
4/6/8/10/12/15 of 28, scaled to this model's depth).
Part C (condition "all_demo/by_n"): source repeat_word (its own test inputs),
target repeat_n over all 20 items; "transfer" <=> the patched output is
"w w" (the item's word twice). Rows carry a per-N breakdown (`by_n`).

The original's headline (N=2 100%, N>=3 0%) is a scoring artifact: for N=2
items the target's own correct answer is also "w w" (protocol 11.2.4). The
strict scorer (aligned mode) reports those outputs as "both", and `by_n`
gives the target-correct rate next to the transfer rate.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common
from icl_jax.studies.scoring import TaskScoring

BASELINE_TASKS = ("repeat_n", "spell_out", "repeat_word", "uppercase",
                  "length")
PART_B_PAIRS = (("repeat_n", "repeat_word"), ("repeat_word", "repeat_n"),
                ("uppercase", "repeat_n"), ("repeat_n", "uppercase"),
                ("spell_out", "length"), ("length", "spell_out"))
STUDY_LAYERS_28 = (4, 6, 8, 10, 12, 15)
common.define_common_flags(default_pairs=PART_B_PAIRS, default_n=15)
flags.DEFINE_list("parts", ["A", "B", "C"], "parts to run (A, B, C)")
common.define_on_mismatch_flag()
F = flags.FLAGS
F.set_default("max_new_tokens", 16)  # repeat_n answers have up to 5 words
EXPERIMENT = "variable_length"
PART_C = "all_demo/by_n"


def study_layers(n_layers):
  from icl_jax.studies.layers import layer_at_fraction

  return [layer_at_fraction(l / 28, n_layers) for l in STUDY_LAYERS_28]


def word_of(item: str) -> str:
  return item.rsplit(" ", 1)[0]


def twice_rule(output: str, query: str) -> bool:
  from icl_jax.tasks import extract_d3

  w = word_of(query)
  return extract_d3(output) == f"{w} {w}"


def add_by_n(row: dict) -> dict:
  """Per repeat count N: prompts, transfer ("w w") and target-correct."""
  if row["condition"] != PART_C:
    return row
  by = {}
  for e in row["examples"]:
    k = e["query"].rsplit(" ", 1)[1]
    d = by.setdefault(k, {"n": 0, "transfer": 0, "target_correct": 0})
    d["n"] += 1
    d["transfer"] += bool(e.get("source_correct"))
    d["target_correct"] += bool(e.get("target_correct"))
  row["by_n"] = {k: by[k] for k in sorted(by, key=int)}
  return row


def build_jobs(modes, parts, pairs, n, layers, seed, on_mismatch):
  from icl_jax.studies import plans, setups
  from icl_jax.tasks import get_task, make_episodes

  jobs = []
  for mode in modes:
    if "B" in parts:
      for setup in setups.setup_pairs(pairs, n, queries="target", seed=seed):
        jobs.append(plans.transfer_job(mode, setup, layers, ["all_demo"],
                                       on_mismatch=on_mismatch))
    if "C" in parts:
      n_items = len(get_task("repeat_n").pool)
      src = get_task("repeat_word")
      tgt = get_task("repeat_n")
      setup = setups.PairSetup(
          "repeat_word", "repeat_n",
          make_episodes(src, n_items,
                        queries=src.generate_test_inputs(n_items)),
          make_episodes(tgt, n_items,
                        queries=tgt.generate_test_inputs(n_items)))
      scoring = TaskScoring("repeat_word", "repeat_n",
                                  source_rule=twice_rule)
      jobs.append(plans.transfer_job(
          mode, setup, layers, ["all_demo"], on_mismatch=on_mismatch,
          scoring=scoring, condition_names={"all_demo": PART_C},
          label="Part C: repeat_word -> repeat_n by N"))
  return jobs


def main(argv):
  del argv
  from icl_jax.analysis.plots import transfer_by_layer

  modes, pairs, n = common.parse_pair_flags()
  parts = [p.strip().upper() for p in F.parts]
  bad = [p for p in parts if p not in ("A", "B", "C")]
  if bad or not parts:
    raise ValueError(f"--parts {F.parts}: use a subset of A,B,C")
  st = common.open_pair_study(EXPERIMENT, modes, pairs, n,
                              dict(parts=sorted(parts)),
                              study_layers=study_layers)
  if "A" in parts:  # baselines: one batched generation
    st.run_baselines(BASELINE_TASKS, n)
  rows = st.run(build_jobs(modes, parts, pairs, n, st.layers, F.seed,
                           F.on_mismatch), row_hook=add_by_n)
  transfer_by_layer([r for r in rows if r["condition"] != "baseline"],
                    st.path / "transfer_by_layer.png",
                    title=f"exp33 variable-length tasks on {F.model}")
  base = {f"{r['mode']}/{r['target_task']}": r["preserve"] for r in rows
          if r["condition"] == "baseline"}
  part_c = [{"mode": r["mode"], "layer": r["layer"], "by_n": r["by_n"]}
            for r in rows if r["condition"] == PART_C]
  st.finish({"baselines": base, "part_c": part_c})
  for k, v in sorted(base.items()):
    print(f"baseline {k}: {v:.2f}")
  for c in part_c:
    cells = ", ".join(f"N={k}: {d['transfer']}/{d['n']} (target-correct "
                      f"{d['target_correct']})" for k, d in c["by_n"].items())
    print(f"Part C {c['mode']:9} L{c['layer']:<3} {cells}")
  print(f"results under {st.path.resolve()}")


if __name__ == "__main__":
  app.run(main)
