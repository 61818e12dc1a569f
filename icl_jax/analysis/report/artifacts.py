"""Where the original's artifacts explain differences: scorer artifacts
(faithful vs strict scorer on the same outputs), tokenizer facts, query
overwrites, faithful-vs-aligned differences, and the protocol's artifact
statements (`reference.ARTIFACTS`)."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from icl_jax.analysis import reference as R
from icl_jax.analysis.report.data import Data
from icl_jax.analysis.report.markdown import (by, images, pair, short_model,
                                              strict_transfer)


def scorer_artifacts(rows, threshold=0.2, limit=8) -> list[str]:
  """Faithful cells whose 'transfer' the strict scorer does not confirm."""
  out = []
  g = defaultdict(list)
  for r in rows:
    if r.get("mode") != "faithful":
      continue
    s = strict_transfer(r)
    if s is None:
      continue
    g[(r["model"], r["source_task"], r["target_task"])].append(
        (r["transfer"] - s, r))
  items = []
  for k, v in g.items():
    d, r = max(v, key=lambda x: x[0])
    if d >= threshold:
      items.append((d, r))
  items.sort(key=lambda x: -x[0])
  for d, r in items[:limit]:
    ex = next((e for e in r.get("examples", [])
               if e.get("label") == "transfer"), None)
    eg = (f" (e.g. query {ex['query']!r} -> {ex['output']!r})"
          if ex else "")
    out.append(f"{short_model(r['model'])} {pair(r)} L{r['layer']} "
               f"{r['condition']}: faithful transfer {r['transfer']:.2f}, "
               f"strict {strict_transfer(r):.2f}{eg}")
  return out


def scorer_artifact_line(rows) -> str | None:
  """One sentence naming the faithful cells the strict scorer rejects."""
  sa = scorer_artifacts(rows)
  if not sa:
    return None
  return ("Scorer artifacts (11.2) in our data -- faithful-scorer 'transfer' "
          "that the strict scorer rejects on the same outputs: " +
          "; ".join(sa) + ".")


def tokenization_facts(data: Data, model: str) -> dict | None:
  for s in data.summaries.get("tokenization", []):
    if s.get("config", {}).get("model") == model:
      return s
  return None


def query_overwrites(data: Data, model: str) -> dict:
  """{(source, target): faithful all_demo query tokens overwritten}."""
  return {(r["source_task"], r["target_task"]): r
          for r in data.get("tokenization")
          if r.get("model") == model and r.get("condition") == "pair_layout"
          and r.get("mode") == "faithful"}


def artifact_notes(data: Data, rows, keys: Sequence[str]) -> str:
  """Computed explanations + the protocol's artifact statements."""
  lines = []
  sa = scorer_artifact_line(rows)
  if sa:
    lines.append(sa)
  for model in data.models():
    mrows = [r for r in rows if r.get("model") == model]
    if not mrows:
      continue
    facts = tokenization_facts(data, model)
    if facts:
      tf = facts.get("tokenizer", {})
      drift = facts.get("output_line_drift_uppercase")
      lines.append(
          f"{short_model(model)} tokenizer: BOS "
          f"{'added' if tf.get('adds_bos') else 'not added'}, '\\n\\n' "
          f"{'is one token' if tf.get('double_newline_one_token') else 'is two tokens'}"
          f"; the study's output-line index is off by {drift} tokens for "
          "demos 0-4 (uppercase source), so faithful and aligned "
          + ("positions coincide" if drift and not any(drift) else
             "positions differ") + " on this model.")
    ov = query_overwrites(data, model)
    if ov:
      hit = sorted({pair(r) for r in mrows
                    if r.get("mode") == "faithful" and r.get("condition") in
                    ("all_demo", "true_source", "random_source")} &
                   {f"{s}->{t}" for (s, t), x in ov.items()
                    if x.get("query_tokens_overwritten", 0) > 0})
      if hit:
        lines.append(
            f"{short_model(model)}: in faithful mode the source's all_demo "
            "index set overwrites target query tokens (11.1.2) for "
            + ", ".join(hit[:12]) + (" ..." if len(hit) > 12 else "") + ".")
    diffs = []
    for (s, t, l, c), rs in by([r for r in mrows if isinstance(
        r.get("layer"), int)], "source_task", "target_task", "layer",
                                "condition").items():
      f = [r for r in rs if r["mode"] == "faithful"]
      a = [r for r in rs if r["mode"] == "aligned"]
      if f and a and abs(f[0]["transfer"] - a[0]["transfer"]) >= 0.3:
        diffs.append((f[0]["transfer"] - a[0]["transfer"], s, t, l, c))
    if diffs:
      diffs.sort(key=lambda x: -abs(x[0]))
      lines.append(
          f"{short_model(model)}: largest faithful-vs-aligned differences "
          "(same prompts, same layer): " + "; ".join(
              f"{s}->{t} L{l} {c}: {d:+.2f}" for d, s, t, l, c in diffs[:6])
          + ".")
  for k in keys:
    sec, text, _ = R.ARTIFACTS[k]
    lines.append(f"Original ({sec}): {text}")
  if not lines:
    return ""
  return "Where the original's artifacts explain differences:\n\n" + "\n".join(
      f"- {l}" for l in lines) + "\n"


def plots_and_notes(data: Data, experiment: str, rows,
                    notes: Sequence[str]) -> str:
  """The experiment's plots, then the artifact notes `notes`."""
  return (images(data, data.pngs(experiment)) + "\n" +
          artifact_notes(data, rows, notes))
