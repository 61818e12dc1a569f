"""Runs an experiment script as one process of a jax.distributed run (one
process per host of a TPU pod slice or a multi-host GPU cluster):

    python -m icl_jax.studies.launch \
        [--coordinator=HOST:PORT --num_processes=N --process_id=I] \
        experiments/sweep.py --model=... --out_dir=...
    python -m icl_jax.studies.launch [...] -m experiments.main --model=...

The same command runs on every host (with its own --process_id). Without
the three flags `jax.distributed.initialize()` detects the cluster itself
(Cloud TPU, SLURM, Open MPI, ...). Every process runs the whole script; the
engine shards each sweep's cells over the devices of all hosts and gathers
the results on every process (`icl_jax.interventions.distributed`); process
0 alone writes result files (`analysis.results.RunDir`) and figures.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys

import jax

from icl_jax.interventions.distributed import is_primary


def _quiet_secondary() -> None:
  """Processes other than 0 show no progress bars and save no figures
  (process 0 draws the same figures from the same rows)."""
  if is_primary():
    return
  os.environ["TQDM_DISABLE"] = "1"
  try:
    from matplotlib.figure import Figure
  except ImportError:
    return
  Figure.savefig = lambda self, *a, **k: None


def main(argv=None) -> None:
  p = argparse.ArgumentParser(
      prog="python -m icl_jax.studies.launch",
      description="Runs a script as one process of a jax.distributed run.")
  p.add_argument("--coordinator", help="HOST:PORT of process 0")
  p.add_argument("--num_processes", type=int)
  p.add_argument("--process_id", type=int)
  p.add_argument("-m", dest="module", action="store_true",
                 help="TARGET is a module (as python -m)")
  p.add_argument("target", help="script path (or module with -m)")
  p.add_argument("args", nargs=argparse.REMAINDER)
  a = p.parse_args(argv)
  jax.distributed.initialize(coordinator_address=a.coordinator,
                             num_processes=a.num_processes,
                             process_id=a.process_id)
  _quiet_secondary()
  sys.argv = [a.target] + a.args
  if a.module:
    runpy.run_module(a.target, run_name="__main__", alter_sys=True)
  else:
    runpy.run_path(a.target, run_name="__main__")


if __name__ == "__main__":
  main()
