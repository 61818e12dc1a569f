r"""exp11: noise "causal tracing" at one position.

    python experiments/noise_tracing.py --model=gemma3-270m --n=10

For each task's N prompts, Gaussian noise is added to the residual after
block L at one position on the prompt forward (patched K/V persist, D3):
h[pos] += sigma * eps. Rows give the accuracy under noise, the clean
baseline of the same prompts and the disruption (protocol 8.11).

  faithful (as run): positions from `get_position_index` (last_demo_token =
    the "\n\n" separator; first_query_token); the original's *unit* noise
    eps ~ N(0, I) times each scale of --faithful_scales (the Llama-3B run
    used 0.5, 1, 2, 5 with 2 as the headline; the other models 2, 5 with 5);
    disruption = baseline acc - noised acc (absolute); faithful scorers.
  aligned (the paper's definition): the layout's positions (last demo's
    final answer token; first query-value token), sigma = 3 x sigma_act,
    sigma_act = std of the residual after block L over --act_prompts prompts
    of the 8 core tasks (every element of every non-special token);
    disruption = (baseline - noised) / baseline (relative); strict scorers.

The original drew unseeded noise (`torch.randn_like`) per generation. Here
noise is seeded: with --noise_per_prompt (default) every (prompt, layer,
position, scale) draws its own eps from a seed derived from --seed, so
prompts get independent noise as in the original; without it, one eps per
cell is shared by the N prompts (faster). `--layers=study` is the original's
grid range(0, n, max(1, n // 14)); default: every layer. The plan is
`icl_jax.studies.ablation_plans.noise_plan`.
"""

from __future__ import annotations

from absl import app, flags

from experiments import common
from icl_jax.studies.ablation_plans import NOISE_POSITIONS, NOISE_UNITS

common.define_common_flags(default_n=10)
flags.DEFINE_list("tasks", ["uppercase", "first_letter", "repeat_word",
                            "length", "linear_2x", "sentiment", "antonym",
                            "pattern_completion"], "tasks (8 core)")
flags.DEFINE_list("positions", ["last_demo_token", "first_query_token"],
                  "noised positions")
flags.DEFINE_enum("faithful_noise", "unit", list(NOISE_UNITS),
                  "noise unit in faithful mode: unit (N(0, I), as run), "
                  "act_std (sigma_act of the layer) or rms (the residual's "
                  "own RMS at the position)")
flags.DEFINE_list("faithful_scales", ["0.5", "1", "2", "5"],
                  "noise scales in faithful mode")
flags.DEFINE_enum("aligned_noise", "act_std", list(NOISE_UNITS),
                  "noise unit in aligned mode")
flags.DEFINE_list("aligned_scales", ["3"], "noise scales in aligned mode")
flags.DEFINE_float("primary_scale", None, "scale reported as primary "
                   "(default: the largest, as the current original script)")
flags.DEFINE_integer("act_prompts", 100, "prompts estimating sigma_act",
                     lower_bound=1)
flags.DEFINE_boolean("noise_per_prompt", True,
                     "independent noise per prompt (else one draw per cell)")
F = flags.FLAGS
EXPERIMENT = "noise_tracing"


def main(argv):
  del argv
  from icl_jax.analysis.heatmaps import heatmap
  from icl_jax.studies import ablation, ablation_plans
  from icl_jax.studies.study import check_choices, parse_floats

  tasks, modes = common.parse_task_flags()
  positions = check_choices(F.positions, NOISE_POSITIONS, "--positions")
  noise = {"faithful": (F.faithful_noise, parse_floats(
      F.faithful_scales, "--faithful_scales")),
           "aligned": (F.aligned_noise, parse_floats(
               F.aligned_scales, "--aligned_scales"))}
  if F.act_prompts < 1:
    raise ValueError("--act_prompts must be >= 1")
  lm, layers = common.load_model_and_layers(EXPERIMENT)
  config = dict(model=F.model, tasks=tasks, positions=positions,
                layers=layers, modes=modes, n=F.n,
                noise={m: [noise[m][0], noise[m][1]] for m in modes},
                primary_scale=F.primary_scale, act_prompts=F.act_prompts,
                noise_per_prompt=F.noise_per_prompt, seed=F.seed,
                max_new_tokens=F.max_new_tokens)
  study = common.open_run(lm, EXPERIMENT, config,
                          key_extra=("noise", "scale"))
  sigma_act = None
  if any(noise[m][0] == "act_std" for m in modes):
    sigma_act = ablation.activation_std(
        lm, layers, ablation_plans.act_std_prompts(F.act_prompts))
  plan = ablation_plans.noise_plan(
      lm.tokenizer, layers=layers, positions=positions, noise=noise,
      primary_scale=F.primary_scale, sigma_act=sigma_act, seed=F.seed,
      per_prompt=F.noise_per_prompt, d_model=lm.config.d_model)
  study.start(len(modes) * len(tasks), unit="task")
  ablation.run_task_ablations(study, tasks=tasks, modes=modes, n=F.n,
                              plan=plan, extra={"noise": None, "scale": None})
  rows = study.rows()
  study.finish({"sigma_act": sigma_act})
  prim = [r for r in rows if r.get("primary")]
  heatmap(prim, study.path / "disruption.png", x="layer", y="target_task",
          value="disruption", panel=("mode", "condition", "noise", "scale"),
          vmin=-1, vmax=1, cmap="RdBu_r", xlabel="layer (block)",
          title="noise disruption at the primary scale (faithful: absolute, "
                "aligned: relative)")
  heatmap([r for r in rows if r["condition"] != "baseline"],
          study.path / "accuracy_by_scale.png", x="layer",
          y=lambda r: f"{r['target_task']} s={r['scale']}",
          value="accuracy", panel=("mode", "condition"), xlabel="layer",
          title="accuracy under noise, every scale")
  print(f"{len(rows)} rows under {study.path}")


if __name__ == "__main__":
  app.run(main)
