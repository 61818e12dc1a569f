"""The generic section of an experiment without a renderer of its own:
mean rates by (model, mode, condition) x layer for its numeric fields, or
its rows as a table."""

from __future__ import annotations

import re
from collections import defaultdict

from icl_jax.analysis.report.artifacts import scorer_artifact_line
from icl_jax.analysis.report.data import Data
from icl_jax.analysis.report.markdown import (f2, images, md_table, numeric,
                                              transfer_grid)

GENERIC_SKIP = {"n", "layer", "n_layers", "n_positions", "seed", "k",
                "size", "subset", "source_k", "max_residual_change",
                "max_new_tokens", "changed"}
GENERIC_SKIP_RE = re.compile(r"index|depth|^ci_|_ci$|std|seconds|count")
PREFERRED = ("transfer", "preserve", "accuracy", "accuracy_faithful",
             "accuracy_strict", "disruption", "td", "probe_accuracy")


# Fields of a source -> target transfer; meaningless where every row's source
# and target task are the same (single-task ablations: exp10-12, exp14A).
TRANSFER_FIELDS = ("transfer", "preserve", "neither", "both")
PREFERRED_ABLATION = ("disruption", "accuracy", "accuracy_faithful",
                      "accuracy_strict")


def single_task(rows) -> bool:
  return bool(rows) and all(r.get("source_task") == r.get("target_task")
                            for r in rows)


def generic_metrics(rows) -> list[str]:
  """Numeric fields worth a by-layer table (preferred names first):
  transfer and preserve for transfer experiments, disruption and accuracy
  for single-task ablations (which carry no transfer)."""
  ablation = single_task(rows)
  keys = []
  for r in rows[:200]:
    for k, v in r.items():
      if k not in keys and numeric(v) and k not in GENERIC_SKIP and \
          not k.startswith("_") and not GENERIC_SKIP_RE.search(k) and \
          not (ablation and k in TRANSFER_FIELDS):
        keys.append(k)
  forced = () if ablation else ("transfer", "preserve")
  varying = [k for k in keys if len({r.get(k) for r in rows}) > 1 or
             k in forced]
  preferred = PREFERRED_ABLATION if ablation else PREFERRED
  ordered = [k for k in preferred if k in varying] + [
      k for k in varying if k not in preferred]
  return ordered


def drop_matrix_diagonal(rows):
  """Rows without the diagonal of any condition that is a pair matrix.

  A condition holding both source == target and source != target rows
  (exp3's 8 x 8 transplant matrix) is reported over its off-diagonal pairs,
  as the original's "mean off-diagonal transfer"; conditions whose rows are
  all single-task (controls, ablations) are kept whole. Returns (rows,
  number of rows dropped).
  """
  def diag(r):
    return r.get("source_task") == r.get("target_task")

  kinds = defaultdict(set)
  for r in rows:
    kinds[str(r.get("condition"))].add(diag(r))
  mixed = {c for c, k in kinds.items() if k == {True, False}}
  kept = [r for r in rows
          if not (str(r.get("condition")) in mixed and diag(r))]
  return kept, len(rows) - len(kept)


DISRUPTION_KINDS = {
    "absolute": "absolute (baseline accuracy - accuracy under the edit, the "
                "original's definition)",
    "relative": "relative ((baseline - edited accuracy) / baseline)"}


def _metric_kinds(rows, metric: str) -> str:
  """' (faithful: absolute ...; aligned: relative ...)' where a metric's
  definition differs between modes (the rows' own `<metric>_kind`)."""
  kinds = {}
  for r in rows:
    if r.get(f"{metric}_kind") is not None:
      kinds.setdefault(str(r.get("mode")), r[f"{metric}_kind"])
  if not kinds:
    return ""
  return " (" + "; ".join(f"{m}: {DISRUPTION_KINDS.get(k, k)}"
                          for m, k in sorted(kinds.items())) + ")"


def _split_by_probe(rows):
  """Rows of several probes (exp2: nearest centroid, the original's, and
  logistic) get the probe in their condition label, so no table averages
  one probe with another."""
  probes = {r.get("probe") for r in rows if r.get("probe") is not None}
  if len(probes) < 2:
    return rows
  return [dict(r, condition=f"{r.get('condition')} [{r['probe']}]")
          if r.get("probe") is not None else r for r in rows]


def render_generic(data: Data, name: str, rows) -> str:
  models = data.models([name])
  text = ""
  layered = [r for r in rows if isinstance(r.get("layer"), int)]
  if any("primary" in r for r in layered):
    # exp11: one row per noise scale; the tables show the primary scale
    # (the disruption the study reports), the plots every scale.
    layered = [r for r in layered if r.get("primary")]
    text += ("Rows at each mode's primary noise scale (" + ", ".join(
        sorted({f"{r.get('mode')}: {r.get('noise')} x{r.get('scale')}"
                for r in layered})) + ").\n\n")
  layered = _split_by_probe(layered)
  layered, n_diag = drop_matrix_diagonal(layered)
  if n_diag:
    text += (f"Off-diagonal pairs only: {n_diag} rows with source == target "
             "are left out of the means (no transfer is possible there; the "
             "faithful source-first scorer counts every correct answer of "
             "such a row as 'transfer').\n\n")
  metrics = generic_metrics(layered) if layered else []
  if layered and metrics:
    conds = sorted({str(r.get("condition")) for r in layered})
    for r in layered:
      r["condition"] = str(r.get("condition"))
    for metric in metrics[:2]:
      text += (f"Mean {metric} by layer{_metric_kinds(layered, metric)}:"
               "\n\n") + transfer_grid(
          [r for r in layered if numeric(r.get(metric))],
          models, conds, data, metric=metric, max_layers=18) + "\n"
    if len(metrics) > 2:
      text += ("Other numeric fields in the rows: " +
               ", ".join(metrics[2:12]) + ".\n")
  else:
    keys = [k for k in rows[0] if k not in ("examples", "_dir")] if rows \
        else []
    scal = [k for k in keys if all(isinstance(r.get(k), (int, float, str,
                                                         type(None)))
                                   for r in rows[:50])][:10]
    text += md_table(scal, [[f2(r.get(k), 3) if isinstance(
        r.get(k), float) else r.get(k) for k in scal] for r in rows[:30]])
    if len(rows) > 30:
      text += f"\n({len(rows) - 30} more rows in results.jsonl)\n"
  sa = scorer_artifact_line(layered)
  if sa:
    text += "\n" + sa + "\n"
  text += "\n" + images(data, data.pngs(name))
  return text
