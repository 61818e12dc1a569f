r"""Head x layer map of multi-position transfer, top-head groups, and an
average-indirect-effect (AIE) head ranking (issue 19, step 4).

    python experiments/head_map.py --model=gemma3-270m --n=10 \
        --pairs=uppercase:repeat_word --mode=both

For each (mode, source -> target pair):
  map     every (layer, head): that head's output (site head_out) replaced
          at the demo output positions (exp8's output_only set) by the
          source prompts' value, and the whole residual (resid_post) at the
          same positions and layers, in one engine sweep; per cell the
          transfer rate (the study's scorer) and the change of log p(source
          answer) - log p(target answer) at the first generated token;
  groups  per layer, its top-k heads by the map patched together (k = 2, 4,
          ..., all heads of the layer = the attention output), against the
          best residual layer;
  global  all L x N heads ranked by the map's change of the metric and by
          AIE; the global top-k (k = 1, 2, 4, ..., all) patched together
          across layers in one forward (icl_jax.HeadGroupPatch), against
          the best residual layer.
AIE (--aie, over --aie_tasks, default the exp8 tasks): Todd et al.'s mean
increase of p(correct) when a head's output at the last token of a
shuffled-label prompt is set to its mean over clean ICL prompts; compared
with the map (top-10 overlap, Spearman).

Results: <out_dir>/head_map/results.jsonl (rows keyed by layer and
condition: resid_post, head<h>, top<k>, baseline, g<map|aie>_top<k>),
<out_dir>/head_map_aie/results.jsonl, summary.json (per pair: best residual
layer, transfer by k, first k reaching it, global top-k curves, AIE
comparison), PNGs: heads_transfer_*, heads_logit_diff_change_*, top_k_*,
global_top_k_{transfer,logit_diff_change}_*, aie_vs_map_*.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common

common.define_common_flags(default_pairs=(("uppercase", "repeat_word"),),
                           default_n=10)
common.define_on_mismatch_flag()
flags.DEFINE_boolean("aie", True, "also the AIE ranking (Todd et al.)")
flags.DEFINE_list("aie_tasks", None, "AIE tasks (default: the tasks of the "
                  "exp8 pairs)")
F = flags.FLAGS


def main(argv):
  del argv
  from icl_jax.studies import head_map, study

  modes, pairs, n = common.parse_pair_flags()
  study.check_positive(F.max_new_tokens, "--max_new_tokens")
  tasks = (study.parse_tasks(F.aie_tasks) if F.aie_tasks else
           sorted({t for p in common.EXP8_PAIRS for t in p}))
  lm = common.load_model(head_map.EXPERIMENT, head_map.AIE_EXPERIMENT)
  st = common.open_pair_study(head_map.EXPERIMENT, modes, pairs, n,
                              {"condition": head_map.CONDITION}, lm=lm)
  aie_st = None
  if F.aie:
    aie_st = study.open_study(
        experiment=head_map.AIE_EXPERIMENT, model=F.model, out_dir=F.out_dir,
        config=dict(tasks=tasks, n=n, seed=F.seed, k=5), layers=F.layers,
        modes=modes, dtype=F.dtype, max_new_tokens=1, lm=lm)
  out = head_map.run_study(st, aie_st, pairs=pairs, modes=modes, n=n,
                           tasks=tasks, seed=F.seed,
                           on_mismatch=F.on_mismatch)
  for title, s in out.items():
    comp = s["aie_comparison"] or {}
    print(f"{title}: best residual L{s['best_resid_layer']} transfer "
          f"{s['best_resid_transfer']:.2f}; first k of one layer's top "
          f"heads reaching it: {s['first_k_reaching_resid']}; global "
          "top-k (transfer, logit diff change): " + "; ".join(
              f"{r}: " + " ".join(
                  f"k={x['k']} {x['transfer']:.2f} " + str(
                      x["logit_diff_change"] and round(
                          x["logit_diff_change"], 2)) for x in g)
              for r, g in s["global_top_k"].items()) + "; top heads "
          f"{s['top_heads'][:5]}; AIE top-10 overlap "
          f"{comp.get('top10_overlap')}, Spearman "
          f"{comp.get('spearman_aie_vs_map_logit_diff_change')}")
  print(f"results under {st.path.resolve()}")


if __name__ == "__main__":
  app.run(main)
