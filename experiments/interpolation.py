r"""exp4: interpolation and vector arithmetic of single-position task vectors.

    python experiments/interpolation.py --model=gemma3-270m --n=10 \
        --layers=study

Task vectors v_X = mean residual after block L at `last_demo_token` over N
prompts of task X (the first RNG call of each task, as exp3's vectors).

  interpolation: v(a) = a v_A + (1 - a) v_B replaces the residual at the
    `last_demo_token` of task-A prompts, a in --alphas; rows: source_task B,
    target_task A, preserve = P(A correct), transfer = P(B correct | not A)
    (target-first). summary.json: midpoint slope, transition width, linear
    correlation of P_A with a (the original's sharpness metrics).
  arithmetic: v_C + (v_A - v_B) into task-C prompts; rows: source_task A,
    target_task C, transfer = P(A correct), preserve = P(C correct).

faithful: the study's position ("\n\n" on Llama/Gemma), D2 decoder,
faithful scorers. aligned: the last demo's final answer token, prefill
(patched K/V persist), strict scorers. The original used layer 14 of 28
(`--layers=study`); default: every layer.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common

INTERP_PAIRS = (("uppercase", "first_letter"), ("uppercase", "sentiment"),
                ("linear_2x", "length"), ("sentiment", "antonym"),
                ("pattern_completion", "uppercase"),
                ("linear_2x", "sentiment"))
TRIPLES = (("uppercase", "first_letter", "repeat_word"),
           ("sentiment", "antonym", "linear_2x"),
           ("length", "linear_2x", "sentiment"))
common.define_common_flags(default_pairs=INTERP_PAIRS, default_n=10)
flags.DEFINE_string("triples", ",".join(":".join(t) for t in TRIPLES),
                    "arithmetic triples A:B:C (v_C + v_A - v_B into task C); "
                    "'none' for no arithmetic")
flags.DEFINE_list("alphas", [f"{i / 10:.1f}" for i in range(11)],
                  "interpolation weights of v_A")
common.define_timing_flag()
F = flags.FLAGS
EXPERIMENT = "interpolation"


def main(argv):
  del argv
  from icl_jax.studies import single_position as sp
  from icl_jax.studies.study import parse_floats, parse_triples
  from icl_jax.analysis.heatmaps import heatmap

  pairs, modes = common.parse_pairs_and_modes()
  triples = parse_triples(F.triples)
  alphas = parse_floats(F.alphas, "--alphas")
  lm, layers = common.load_model_and_layers(EXPERIMENT)
  config = dict(model=F.model, pairs=[list(p) for p in pairs],
                triples=[list(t) for t in triples], alphas=alphas,
                layers=layers, modes=modes, n=F.n, timing=F.timing,
                seed=F.seed, max_new_tokens=F.max_new_tokens)
  study = common.open_run(lm, EXPERIMENT, config)
  study.start(len(modes) * (len(pairs) + len(triples)), unit="job")
  sp.run_interpolation(study, pairs=pairs, triples=triples, alphas=alphas,
                       layers=layers, modes=modes, n=F.n, timing=F.timing)
  rows = study.rows()
  study.finish({"sharpness": sp.interpolation_metrics(rows)})
  interp = [r for r in rows if r["condition"].startswith("interp:")]
  heatmap(interp, study.path / "interpolation.png", x="alpha", y="layer",
          value="preserve", panel=("mode", "target_task", "source_task"),
          xlabel="alpha (weight of v_A)", ylabel="layer",
          title="P(A correct) on task-A prompts; panels: mode / A / B")
  arith = [r for r in rows if r["condition"].startswith("arith:")]
  heatmap(arith, study.path / "arithmetic.png", x="layer",
          y=lambda r: f"{r['task_c']}+{r['task_a']}-{r['task_b']}",
          value="transfer", panel=("mode",), xlabel="layer",
          title="P(A correct) after v_C + v_A - v_B on task-C prompts")
  print(f"{len(rows)} rows under {study.path}")


if __name__ == "__main__":
  app.run(main)
