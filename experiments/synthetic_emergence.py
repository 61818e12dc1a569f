r"""Synthetic encoder-decoder emergence study (Han et al. 2024, §3.3).

Trains a GPT-2-style regressor on a mixture of 4 sparse linear regressions
(or resumes the run in --run_dir), logging per-basis loss and TD per layer,
then writes under --run_dir:

  emergence.png         per-basis loss + TD per layer over training
  projection.png        PCA 2-D of residuals at chosen layers and steps
  mse_vs_examples.png   test MSE vs number of in-context examples + baselines
  summary.json          config, final numbers, a table over steps, timing
  log.json, config.json, checkpoints/, snapshots/   (from the trainer)

Examples:

  # The paper's configuration (12L/8H/d256, batch 128, 80K steps, lr 1e-4):
  python -m experiments.synthetic_emergence --run_dir=runs/synthetic_paper

  # The reduced CPU run documented in BUILD_NOTES.md (paper task, with a
  # Garg et al.-style dimension curriculum, Adam b2 0.999 and a warm-up):
  python -m experiments.synthetic_emergence --preset=reduced \
      --run_dir=runs/synthetic_reduced/d16_curriculum --batch_size=64 \
      --learning_rate=1e-3 --b2=0.999 --warmup_steps=200 \
      --curriculum_start_rank=1 --curriculum_every=2000 --num_steps=9000 \
      --eval_every=250 --ckpt_every=500 --steps_per_call=25 \
      --snapshot_steps=0,2000,4000,6000,7500,9000

  # Re-plot only / measure the step time of a configuration:
  python -m experiments.synthetic_emergence --run_dir=... --plot_only
  python -m experiments.synthetic_emergence --run_dir=... --measure_step_time=5

Re-running with the same --run_dir resumes from the latest checkpoint; a
--run_dir made with different (non-schedule) settings is refused.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from absl import app, flags, logging

from icl_jax.synthetic.summary import summarize_run, write_results

FLAGS = flags.FLAGS

flags.DEFINE_string("run_dir", "runs/synthetic_emergence", "Run directory.")
flags.DEFINE_enum("preset", "paper", ["paper", "reduced", "tiny"],
                  "Model size preset (see icl_jax.synthetic.PRESETS).")
flags.DEFINE_integer("n_layers", None, "Override the preset's layer count.")
flags.DEFINE_integer("n_heads", None, "Override the preset's head count.")
flags.DEFINE_integer("d_model", None, "Override the preset's width.")
flags.DEFINE_integer("n_dims", 16, "Input dimension D.")
flags.DEFINE_integer("n_bases", 4, "Number of sparsity bases (latent tasks).")
flags.DEFINE_integer("basis_rank", 4, "Active dims per basis.")
flags.DEFINE_integer("n_points", 20, "(x, y) pairs per sequence.")
flags.DEFINE_float("noise_var", 0.01, "Noise variance.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_integer("num_steps", 80_000, "Total optimizer steps.")
flags.DEFINE_float("learning_rate", 1e-4, "Adam learning rate.")
flags.DEFINE_float("b1", 0.9, "Adam beta1.")
flags.DEFINE_float("b2", 0.9999, "Adam beta2.")
flags.DEFINE_integer("warmup_steps", 0,
                     "Linear lr warm-up steps (paper: none; a deviation).")
flags.DEFINE_integer("curriculum_start_rank", 0,
                     "Dimension curriculum (Garg et al.; a deviation): train "
                     "on the first r dims of each basis block, r growing from "
                     "this value to basis_rank. 0 = off (the paper).")
flags.DEFINE_integer("curriculum_every", 0,
                     "Steps per curriculum stage (rank += 1).")
flags.DEFINE_integer("seed", 0, "Seed (init, data, eval sets).")
flags.DEFINE_integer("steps_per_epoch", 800, "Assumed steps per 'epoch'.")
flags.DEFINE_integer("n_test_per_basis", 250, "Test sequences per basis.")
flags.DEFINE_integer("n_td_per_basis", 100, "TD/projection samples per basis.")
flags.DEFINE_integer("td_k", 10, "k of the kNN TD.")
flags.DEFINE_integer("log_every", 100, "Train-loss logging interval.")
flags.DEFINE_integer("eval_every", 800, "Eval (test MSE + TD) interval.")
flags.DEFINE_integer("ckpt_every", 4000, "Checkpoint interval.")
flags.DEFINE_integer("max_to_keep", 2, "Checkpoints kept.")
flags.DEFINE_integer("steps_per_call", 1, "Optimizer steps per jitted call.")
flags.DEFINE_list("snapshot_steps", ["0", "16000", "80000"],
                  "Steps whose TD-set residuals are saved for the projection.")
flags.DEFINE_list("projection_steps", None,
                  "Snapshot steps to show in projection.png (default: all).")
flags.DEFINE_list("projection_layers", None,
                  "Residual indices to project (default: 5 = the paper's "
                  "layer 5, or the last layer, plus the best-TD layer).")
flags.DEFINE_enum("td_position", "y", ["y", "x"],
                  "Token for TD/projection plots: y_K (Fig. 2) or x_K.")
flags.DEFINE_integer("stop_at", None, "Stop (checkpointed) at this step.")
flags.DEFINE_float("max_seconds", None, "Stop (checkpointed) after this long.")
flags.DEFINE_bool("plot_only", False, "Only plot an existing run dir.")
flags.DEFINE_integer("measure_step_time", 0,
                     "If > 0: time this many steps of the config and exit.")
flags.DEFINE_bool("progress", True, "tqdm progress bar.")


def build_config():
  from icl_jax import synthetic as syn  # noqa: PLC0415

  task = syn.TaskConfig(
      n_dims=FLAGS.n_dims,
      n_bases=FLAGS.n_bases,
      basis_rank=FLAGS.basis_rank,
      n_points=FLAGS.n_points,
      noise_var=FLAGS.noise_var,
  )
  base = syn.PRESETS[FLAGS.preset]
  overrides = {
      k: getattr(FLAGS, k)
      for k in ("n_layers", "n_heads", "d_model")
      if getattr(FLAGS, k) is not None
  }
  import dataclasses  # noqa: PLC0415

  model = dataclasses.replace(
      base, n_dims=task.n_dims, n_positions=task.seq_len, **overrides
  )
  return syn.TrainConfig(
      model=model,
      task=task,
      batch_size=FLAGS.batch_size,
      num_steps=FLAGS.num_steps,
      learning_rate=FLAGS.learning_rate,
      b1=FLAGS.b1,
      b2=FLAGS.b2,
      warmup_steps=FLAGS.warmup_steps,
      curriculum_start_rank=FLAGS.curriculum_start_rank,
      curriculum_every=FLAGS.curriculum_every,
      seed=FLAGS.seed,
      steps_per_epoch=FLAGS.steps_per_epoch,
      n_test_per_basis=FLAGS.n_test_per_basis,
      n_td_per_basis=FLAGS.n_td_per_basis,
      td_k=FLAGS.td_k,
      log_every=FLAGS.log_every,
      eval_every=FLAGS.eval_every,
      ckpt_every=FLAGS.ckpt_every,
      max_to_keep=FLAGS.max_to_keep,
      snapshot_steps=tuple(int(s) for s in FLAGS.snapshot_steps),
      steps_per_call=FLAGS.steps_per_call,
  )


def make_plots(run_dir: Path, config, log):
  import numpy as np  # noqa: PLC0415

  from icl_jax import synthetic as syn  # noqa: PLC0415
  from icl_jax.synthetic import plots  # noqa: PLC0415
  from icl_jax.synthetic import summary as summary_lib  # noqa: PLC0415

  out = {}
  out["emergence"] = str(plots.plot_emergence(
      log, run_dir / "emergence.png", td_position=FLAGS.td_position,
      title=(f"{config.model.n_layers}L/{config.model.n_heads}H/"
             f"d{config.model.d_model}, D={config.task.n_dims}, "
             f"{config.task.n_bases}x{config.task.basis_rank}, batch "
             f"{config.batch_size}, lr {config.learning_rate:g}"
             + (f" (warm-up {config.warmup_steps})"
                if config.warmup_steps else "")
             + f", b2 {config.b2:g}"
             + (f", curriculum r{config.curriculum_start_rank}+1/"
                f"{config.curriculum_every}" if config.uses_curriculum else "")
             + f", seed {config.seed}"),
  ))
  snaps = plots.load_snapshots(
      run_dir,
      steps=[int(x) for x in FLAGS.projection_steps]
      if FLAGS.projection_steps else None,
  )
  if snaps:
    n_res = config.model.n_layers + 1
    if FLAGS.projection_layers:
      layers = [int(x) for x in FLAGS.projection_layers]
    else:
      last = log["eval"][-1][f"td_{FLAGS.td_position}"]
      layers = sorted({min(5, n_res - 1), int(np.argmax(last))})
    layers = [layer for layer in layers if 0 <= layer < n_res]
    out["projection"] = str(plots.plot_projection(
        snaps, layers, run_dir / "projection.png", config.steps_per_epoch,
        position=FLAGS.td_position,
    ))
  null = summary_lib.permutation_null(plots.load_snapshots(run_dir),
                                      FLAGS.td_position, config.td_k)
  test, _ = syn.eval_sets(config)
  baselines = syn.baseline_mse_by_index(test, config.task)
  ev_steps = sorted(e["step"] for e in log["eval"])
  pick = sorted({ev_steps[int(round(f * (len(ev_steps) - 1)))]
                 for f in (0, 0.25, 0.5, 0.75, 1.0)})
  out["mse_vs_examples"] = str(plots.plot_mse_vs_examples(
      log, baselines, run_dir / "mse_vs_examples.png", steps=pick,
  ))
  return out, {k: np.asarray(v).round(4).tolist()
               for k, v in baselines.items()}, null


def main(argv):
  del argv
  import jax  # noqa: PLC0415

  from icl_jax import synthetic as syn  # noqa: PLC0415

  run_dir = Path(FLAGS.run_dir)
  if FLAGS.plot_only:
    config = syn.load_config(run_dir)
  else:
    config = build_config()

  if FLAGS.measure_step_time > 0:
    res = syn.measure_step_time(config, n_steps=FLAGS.measure_step_time)
    res.update(model=config.model.__dict__, batch_size=config.batch_size,
               num_steps=config.num_steps, cpu=platform.processor(),
               jax=jax.__version__)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "step_time.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return

  if FLAGS.plot_only:
    log = json.loads((run_dir / "log.json").read_text())
  else:
    t0 = time.perf_counter()
    result = syn.train(
        config, run_dir, progress=FLAGS.progress, stop_at=FLAGS.stop_at,
        max_seconds=FLAGS.max_seconds,
    )
    logging.info("trained to step %d in %.1fs (resumed from %s)",
                 result.step, time.perf_counter() - t0, result.resumed_from)
    log = result.log

  figs, baselines, null = make_plots(run_dir, config, log)
  summary = summarize_run(log, td_position=FLAGS.td_position)
  summary.update(
      figures=figs,
      baselines_mse_by_index=baselines,
      td_permutation_null_q95_by_snapshot=null,
      td_position=FLAGS.td_position,
      config=config.to_dict(),
      versions={"jax": jax.__version__, "python": platform.python_version()},
      device=str(jax.devices()[0]),
  )
  write_results(run_dir, log, config, summary, null_q95=null,
                td_position=FLAGS.td_position)
  if summary["final"]:
    print(json.dumps(summary["final"]))
  print("figures:", json.dumps(figs))


if __name__ == "__main__":
  app.run(main)
