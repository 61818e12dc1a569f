r"""Builds REPORT.md from result directories.

    python experiments/report.py --results=runs/gemma3-270m,runs/smollm2-135m \
        --out=REPORT.md

Reads every `<dir>/**/results.jsonl` (rows in the DESIGN.md format, any
experiment), plus `main_summary.json` and each experiment's summary.json,
and writes one markdown report: the three questions answered from the data,
a section per experiment with our numbers (both modes, each model) beside
the original's reference numbers, plots, and where the original's artifacts
explain a difference. Experiments that were not run are listed as such.
See `icl_jax/analysis/report.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

flags.DEFINE_list("results", ["runs"], "result directories (one per model "
                  "run, or a parent of several)")
flags.DEFINE_string("out", "REPORT.md", "output markdown file")
flags.DEFINE_string("title", None, "report title")
F = flags.FLAGS


def main(argv):
  del argv
  from icl_jax.analysis.report import build_report

  missing = [d for d in F.results if not Path(d).exists()]
  if missing:
    raise FileNotFoundError(f"--results: {missing} do not exist")
  text = build_report(F.results, F.out, F.title)
  print(f"wrote {F.out} ({len(text.splitlines())} lines)")


if __name__ == "__main__":
  app.run(main)
