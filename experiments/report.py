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

The runs REPORT.md was built from are kept in the repository as archives
(`report_inputs/`, `icl_jax.analysis.run_archive`): `--pack_inputs` stores
the --results directories there after building; `--from_inputs` restores
them under the working directory and builds from the manifest's list, so

    python experiments/report.py --from_inputs

rebuilds the committed REPORT.md on a fresh clone (only its `Generated`
line and the commit it was built at differ).
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
flags.DEFINE_string("inputs", "report_inputs",
                    "folder of the archived report inputs (MANIFEST.json)")
flags.DEFINE_bool("pack_inputs", False,
                  "after building, archive every --results directory "
                  "(relative to the working directory) into --inputs")
flags.DEFINE_bool("from_inputs", False,
                  "restore the archived runs of --inputs under the working "
                  "directory and build from its manifest (replaces --results)")
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
  from icl_jax.analysis import run_archive
  from icl_jax.analysis.report import build_report

  results = F.results
  if F.from_inputs:
    results = run_archive.unpack(Path(F.inputs), Path.cwd())
    print(f"restored {len(results)} run directories from {F.inputs}")
  missing = [d for d in results if not Path(d).exists()]
  if missing:
    raise FileNotFoundError(f"--results: {missing} do not exist")
  text = build_report(results, F.out, F.title)
  print(f"wrote {F.out} ({len(text.splitlines())} lines)")
  if F.pack_inputs:
    m = run_archive.pack(results, Path(F.inputs), Path.cwd())
    size = sum((Path(F.inputs) / a).stat().st_size for a in m["archives"])
    print(f"archived {len(results)} run directories in {F.inputs} "
          f"({size / 1e6:.1f} MB)")
  if F.figures_dir:
    n = copy_figures(Path(F.out), F.figures_dir)
    print(f"copied {n} linked plots under {Path(F.out).parent / F.figures_dir}")


if __name__ == "__main__":
  app.run(main)
