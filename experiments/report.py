r"""Builds REPORT.md from result directories.

    python experiments/report.py --results=runs/gemma3-270m,runs/smollm2-135m \
        --out=REPORT.md

Reads every `<dir>/**/results.jsonl` (rows in the DESIGN.md format, any
experiment), plus `main_summary.json` and each experiment's summary.json,
and writes one markdown report: the three questions answered from the data,
a section per experiment with our numbers (both modes, each model) beside
the original's reference numbers, plots, and where the original's artifacts
explain a difference. Experiments that were not run are listed as such.
See the package `icl_jax/analysis/report/` (one module per section family).
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

flags.DEFINE_list("results", ["runs"], "result directories (one per model "
                  "run, or a parent of several)")
flags.DEFINE_string("out", "REPORT.md", "output markdown file")
flags.DEFINE_string("title", None, "report title")
flags.DEFINE_string("figures_dir", "report_figures",
                    "copy every plot the report links into this directory "
                    "(relative to --out's directory) and link the copies, so "
                    "the report stands without the results directories; "
                    "empty: link the plots where they are")
F = flags.FLAGS


def copy_figures(out: Path, figures_dir: str) -> int:
  """Copies the PNGs REPORT.md links into figures_dir; rewrites the links."""
  import re
  import shutil

  text = out.read_text()
  base = out.resolve().parent
  links = sorted(set(re.findall(r"\]\(([^)]+\.png)\)", text)))
  for link in links:
    src = (base / link).resolve()
    if not src.exists() or link.startswith(figures_dir + "/"):
      continue
    # Keep the path below the results root so names stay unique.
    parts = Path(link).parts
    tail = parts[parts.index("report") + 1:] if "report" in parts[:-1] \
        else parts[-3:]
    dst = base / figures_dir / Path(*tail)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    text = text.replace(f"]({link})", f"]({dst.relative_to(base).as_posix()})")
  out.write_text(text)
  # Plots of an earlier report that this one no longer links go, so the
  # folder holds exactly what REPORT.md shows.
  linked = {(base / l).resolve() for l in re.findall(r"\]\(([^)]+\.png)\)",
                                                     text)}
  root = base / figures_dir
  if root.exists():
    for png in root.rglob("*.png"):
      if png.resolve() not in linked:
        png.unlink()
    for d in sorted(root.rglob("*"), reverse=True):  # deepest first
      if d.is_dir() and not any(d.iterdir()):
        d.rmdir()
  return len(links)


def main(argv):
  del argv
  from icl_jax.analysis.report import build_report

  missing = [d for d in F.results if not Path(d).exists()]
  if missing:
    raise FileNotFoundError(f"--results: {missing} do not exist")
  text = build_report(F.results, F.out, F.title)
  print(f"wrote {F.out} ({len(text.splitlines())} lines)")
  if F.figures_dir:
    n = copy_figures(Path(F.out), F.figures_dir)
    print(f"copied {n} linked plots under {Path(F.out).parent / F.figures_dir}")


if __name__ == "__main__":
  app.run(main)
