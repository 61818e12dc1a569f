"""`build_report`: REPORT.md from result directories."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from icl_jax.analysis import reference as R
from icl_jax.analysis.report.accuracy import render_baseline, render_exp14
from icl_jax.analysis.report.closest import render_closest
from icl_jax.analysis.report.data import Data
from icl_jax.analysis.report.grids import render_grids
from icl_jax.analysis.report.generic import render_generic
from icl_jax.analysis.report.han import HAN_EXPERIMENTS, han_section
from icl_jax.analysis.report.heads import (render_head_map,
                                          render_head_map_aie)
from icl_jax.analysis.report.inventory import inventory
from icl_jax.analysis.report.markdown import images, short_model
from icl_jax.analysis.report.names import (KNOWN, MAIN_PARTS, section_key,
                                           study_id)
from icl_jax.analysis.report.questions import answer_multi, answer_single
from icl_jax.analysis.report.similarity import (render_exp6, render_exp19,
                                               render_exp28)
from icl_jax.analysis.report.snippets import (PAIR_SNIPPETS,
                                             REFERENCE_SNIPPETS)
from icl_jax.analysis.report.summary import render_summary
from icl_jax.analysis.report.transfer import (render_exp8, render_exp23,
                                             render_exp27, render_exp29,
                                             render_exp30, render_exp31,
                                             render_exp32, render_exp33,
                                             render_main, ours_by_model)

RENDERERS = {
    "baseline": render_baseline, "multi_position": render_exp8,
    "proper_stats": render_exp23, "controls": render_exp27,
    "pair_matrix": render_exp29, "source_demo_count": render_exp30,
    "output_positions": render_exp31, "sentiment_variants": render_exp32,
    "variable_length": render_exp33, "ontology": render_exp6,
    "template_similarity": render_exp19, "tokenization": render_exp28,
}
# Experiments outside KNOWN with their own table (plots and the reference
# snippet are added as for the generic ones).
EXTRA_RENDERERS = {"demo_ablation": render_exp14,
                   "head_map": render_head_map,
                   "head_map_aie": render_head_map_aie}


def _render_or_generic(renderer, data: Data, name: str, rows) -> str:
  """renderer(data, rows); the generic table if it fails (a renderer bug
  must not lose the report)."""
  try:
    return renderer(data, rows)
  except Exception as e:
    return (f"_(specific renderer failed: {type(e).__name__}: {e}; "
            "generic table below)_\n\n" + render_generic(data, name, rows))


def build_report(roots: Sequence[str | Path], out: str | Path = "REPORT.md",
                 title: str | None = None) -> str:
  """Renders REPORT.md from result directories; returns the text."""
  out = Path(out)
  data = Data(roots, out.resolve().parent)
  parts = [f"# {title or 'Reproduction report: Single-Position Intervention Fails (Cheng & Zhang)'}\n",
           f"Generated {time.strftime('%Y-%m-%d %H:%M')} by "
           "`experiments/report.py` from: " + ", ".join(
               f"`{data.rel(r)}`" for r in data.roots) + ". Models: " +
           (", ".join(f"{short_model(m)} ({data.n_layers(m)} layers)"
                      for m in data.models()) or "none") + ".\n",
           "Our numbers are computed from the rows; the original's are "
           "copied from its result files (`icl_jax/analysis/reference.py`, "
           "Llama-3.2-3B unless stated). 'faithful' = the study as it ran "
           "(its index formulas, absolute indices, its scorers); 'aligned' "
           "= token-exact positions mapped by (demo, role, index), never "
           "into the query, strict scorers.\n",
           render_summary(data), "## What was run\n", inventory(data)]
  parts.append("## 1. Does multi-position transfer exist, and at which "
               "depth?\n")
  t1, _ = answer_multi(data)
  parts.append(t1)
  parts.append("## 2. Is single-position transfer zero under a like-for-like "
               "decoder?\n")
  t2, _ = answer_single(data)
  parts.append(t2)
  parts.append("## 3. Which of the original's headline numbers reproduce?\n")
  parts.append("See the summary table at the top (one row per claim and "
               "model, verdicts from the rule stated there).\n")
  closest, closest_pairs = render_closest(data)
  parts += ["## 4. Side by side with the original's closest model\n",
            closest]
  parts.append("## Experiments\n")
  for name, sid, title_, sec in KNOWN:
    head = f"### {sid}: {title_} (protocol {sec})\n"
    if name == "main":
      if any(data.get(p) for p in MAIN_PARTS):
        parts += [head, render_main(data)]
      else:
        parts += [head, "Not run.\n"]
      continue
    rows = data.get(name)
    if not rows and name == "multi_position" and data.get("main_prefill"):
      parts += [head, "No separate exp8 run: the main job above is exp8 at "
                "every layer: its six pairs, `main_prefill` rows (conditions " +
                ", ".join(sorted({str(r.get("condition")) for r in
                                  data.get("main_prefill")})) + ").\n"]
      continue
    if not rows:
      parts += [head, "Not run.\n"]
      continue
    parts += [head, _render_or_generic(RENDERERS[name], data, name, rows)]
  parts += _other_sections(data)
  parts += han_section(data)
  parts += _artifacts_section(data)
  parts += ["## Appendix: per-pair exp8 grids in the original's format\n",
            render_grids(data)]
  if closest_pairs:
    parts += ["### Per pair, beside the original's closest model\n",
              closest_pairs]
  text = "\n".join(parts)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(text)
  return text


def _other_sections(data: Data) -> list[str]:
  """Heading and body of every experiment outside KNOWN, in study order;
  names outside `names.STUDY_IDS` under their own name."""
  parts = []
  known = {k for k, *_ in KNOWN} | set(MAIN_PARTS) | set(HAN_EXPERIMENTS)
  for name in sorted(set(data.rows) - known, key=section_key):
    sid, t = study_id(name)
    head = f"### {sid + ': ' if sid else ''}{t or name} (`{name}`)\n"
    if name in EXTRA_RENDERERS:
      body = _render_or_generic(
          lambda d, rs: (EXTRA_RENDERERS[name](d, rs) + "\n" +
                         images(d, d.pngs(name))), data, name, data.get(name))
    else:
      body = render_generic(data, name, data.get(name))
    if sid in REFERENCE_SNIPPETS:
      body += "\n" + REFERENCE_SNIPPETS[sid]() + "\n"
    if sid in PAIR_SNIPPETS:
      body += ours_by_model(data, data.get(name), [name]) + ".\n"
    parts += [head, body]
  return parts


def _artifacts_section(data: Data) -> list[str]:
  """The original's artifacts, each with the experiments of ours it
  affects."""
  lines = []
  for key, (sec, text, exps) in R.ARTIFACTS.items():
    affected = sorted(set(exps) & set(data.rows))
    lines.append(f"- **{sec}** {text}" + (
        f" Affects our: {', '.join(affected)}." if affected else ""))
  return ["## The original's artifacts (protocol section 11)\n",
          "\n".join(lines) + "\n"]
