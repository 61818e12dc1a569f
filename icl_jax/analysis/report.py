"""REPORT.md from result directories: our numbers beside the original's.

`build_report(roots)` reads every `<root>/**/results.jsonl` (one results
directory per experiment, DESIGN.md rows; any number of roots, e.g. one per
model), groups rows by their `experiment` field and renders:

  1. what was run (models, experiments, "not run" for the study's others);
  2. the three questions, answered from the data (no hard-coded numbers):
     does multi-position transfer exist in faithful mode, in aligned mode,
     and at which depth fraction; is single-position transfer zero under a
     like-for-like decoder; which headline numbers survive the corrections;
  3. one section per experiment: our numbers (both modes, every model)
     beside the original's (`reference.py`), plots, and where the original's
     artifacts (protocol section 11) explain a difference -- computed where
     the rows allow (scorer artifacts: faithful vs strict scorer on the same
     outputs; position artifacts: faithful vs aligned, query overwrites from
     the tokenization analysis; decoder: D2 vs prefill);
  4. the list of the original's artifacts.

Experiments without a specific renderer get a generic table (mean rates by
mode/condition x layer, or the rows' numeric fields).

Thresholds used in verdicts (stated in the report): an effect "exists" when
the Wilson 95% lower bound of the best cell is >= 0.20 ("weak" when >= 0.05);
a rate "is zero" when no prompt transferred, "near zero" when the pooled rate
is < 0.02 and no cell exceeds 0.20; a depth claim holds within +-0.10.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from icl_jax.convert.embedded import EMBEDDED_MODELS
from icl_jax.analysis import reference as R
from icl_jax.analysis.stats import wilson_interval

EFFECT_LB = 0.20
WEAK_LB = 0.05
ZERO_RATE = 0.02
DEPTH_TOL = 0.10
# Layer counts of the embedded models (rows of other models fall back to
# their largest layer + 1).
KNOWN_N_LAYERS = {name: m.n_layers for name, m in EMBEDDED_MODELS.items()}
MULTI = ("all_demo", "output_only")
# Fields beyond results.KEY_FIELDS that tell a run's rows apart: every
# script's `key_extra` (a test checks the scripts against this list) plus
# fields that separate rows written by one script under several settings.
# Rows equal in all of these are duplicates (a resumed cell) and collapse.
EXTRA_KEYS = ("timing", "source_k", "size", "subset", "queries", "probe",
              "metric", "noise", "scale", "part", "k")

# (experiment name, study id, title, protocol sections)
KNOWN = (
    ("baseline", "exp1", "Baseline ICL accuracy", "8.1, 9.1"),
    ("main", "main", "Main job: multi- vs single-position transfer, every "
     "layer", "8.8, 8.3-8.5, 11.1.4"),
    ("multi_position", "exp8", "Multi-position transplant", "8.8, 9.2"),
    ("proper_stats", "exp23", "N=50 re-run with confidence intervals",
     "8.18, 9.3"),
    ("controls", "exp27", "Controls", "8.19, 9.5"),
    ("pair_matrix", "exp29", "The 56-pair transfer matrix", "8.21, 9.7"),
    ("source_demo_count", "exp30", "Fewer source demos", "8.22, 9.8"),
    ("output_positions", "exp31", "How many output positions", "8.23, 9.8"),
    ("sentiment_variants", "exp32", "Sentiment label variants", "8.24"),
    ("variable_length", "exp33", "Variable-length tasks", "8.25"),
    ("ontology", "exp6", "Task ontology", "8.6"),
    ("template_similarity", "exp19", "Surface template similarity", "8.17"),
    ("tokenization", "exp28", "Tokenization analysis", "8.20"),
)
MAIN_PARTS = ("main_prefill", "main_single_d2")
# Other experiments of the study (scripts by others): name patterns.
GUESSES = (  # first match wins
    (r"^demo_ablation_probe$", "exp14", "Demo-count ablation, part C "
     "(probe accuracy by demo count)"),
    (r"locali|probe", "exp2", "Probing (localization)"),
    (r"query", "exp9", "Query-position transplant"),
    (r"transplant|single_pos", "exp3", "Single-position transplant"),
    (r"interpol|arithmetic", "exp4", "Interpolation / vector arithmetic"),
    (r"locality|layer_sweep", "exp5", "Single-position layer sweep"),
    (r"trajector", "exp7", "Trajectory"),
    (r"attention|knockout|zeroing", "exp10", "'Attention knockout' "
     "(demo zeroing)"),
    (r"noise|activation_patching|tracing", "exp11", "Noise causal tracing"),
    (r"skip|layer_ablation", "exp12", "Layer skipping"),
    (r"instance", "exp13", "Instance-level transfer"),
    (r"demo_ablation|demo_count", "exp14", "Demo-count ablation"),
    (r"cross_format", "exp15", "Cross-format control"),
    (r"decodab|(^|_)td($|_)", "td", "Task decodability (Han et al.)"),
    (r"task_vector", "tv", "Task vectors (Han et al.)"),
    (r"synthetic|emergence", "synthetic", "Synthetic emergence (Han et al.)"),
)
STUDY_EXPERIMENTS = (
    ("exp1", "baseline"), ("exp2", "probing"), ("exp3", "single-position "
    "transplant"), ("exp4", "interpolation"), ("exp5", "single-position "
    "layer sweep"), ("exp6", "ontology"), ("exp7", "trajectory"),
    ("exp8", "multi-position"), ("exp9", "query transplant"),
    ("exp10", "knockout"), ("exp11", "noise"), ("exp12", "layer skip"),
    ("exp13", "instance-level"), ("exp14", "demo count"),
    ("exp15", "cross-format"), ("exp19", "template similarity"),
    ("exp23", "N=50 CIs"), ("exp27", "controls"), ("exp28", "tokenization"),
    ("exp29", "56 pairs"), ("exp30", "source demos"),
    ("exp31", "output positions"), ("exp32", "sentiment variants"),
    ("exp33", "variable length"))


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------

class Data:
  """Rows of every results directory under the roots, by experiment."""

  def __init__(self, roots: Sequence[str | Path], out_dir: Path):
    self.roots = [Path(r) for r in roots]
    self.out_dir = out_dir
    self.rows: dict[str, list[dict]] = defaultdict(list)
    self.dirs: dict[str, list[Path]] = defaultdict(list)
    self.summaries: dict[str, list[dict]] = defaultdict(list)
    self.main_summaries: list[dict] = []
    self.root_pngs: list[Path] = []
    # Directories with rows but no summary.json: every script writes its
    # summary last, so these runs were interrupted and are partial.
    self.unfinished: set[Path] = set()
    seen = set()
    for root in self.roots:
      if not root.exists():
        raise FileNotFoundError(f"results directory {root} does not exist")
      for path in sorted(root.rglob("results.jsonl")):
        if len(path.relative_to(root).parts) > 4:
          continue
        d = path.parent
        for r in _read_jsonl(path):
          name = r.get("experiment") or d.name
          key = (name, _row_key(r))
          if key in seen:
            continue
          seen.add(key)
          r["_dir"] = str(d)
          self.rows[name].append(r)
          if d not in self.dirs[name]:
            self.dirs[name].append(d)
        s = d / "summary.json"
        if s.exists():
          try:
            self.summaries[d.name].append(json.loads(s.read_text()))
          except json.JSONDecodeError:
            pass
        else:
          self.unfinished.add(d)
      for ms in sorted(root.rglob("main_summary.json")):
        try:
          self.main_summaries.append(json.loads(ms.read_text()))
          self.root_pngs += sorted(ms.parent.glob("main_*.png"))
        except json.JSONDecodeError:
          pass

  def get(self, name: str) -> list[dict]:
    return self.rows.get(name, [])

  def models(self, names: Iterable[str] | None = None) -> list[str]:
    names = list(names) if names else list(self.rows)
    ms = {r.get("model") for n in names for r in self.get(n)}
    return sorted(m for m in ms if m and not m.endswith("(original)"))

  def n_layers(self, model: str) -> int | None:
    for rs in self.rows.values():
      for r in rs:
        if r.get("model") == model and r.get("n_layers"):
          return int(r["n_layers"])
    for s in self.main_summaries:
      if s.get("model") == model and s.get("n_layers"):
        return int(s["n_layers"])
    for key, n in KNOWN_N_LAYERS.items():
      if model == key or str(model).rstrip("/").endswith(key):
        return n
    layers = [r.get("layer") for rs in self.rows.values() for r in rs
              if r.get("model") == model and isinstance(r.get("layer"), int)]
    return max(layers) + 1 if layers else None

  def pngs(self, name: str) -> list[Path]:
    out = []
    for d in self.dirs.get(name, []):
      out += sorted(d.glob("*.png"))
    return out

  def rel(self, p: Path) -> str:
    try:
      return os.path.relpath(p, self.out_dir)
    except ValueError:
      return str(p)


def _read_jsonl(path: Path) -> list[dict]:
  """Rows of a results.jsonl; a corrupt line is reported (a warning naming
  the file and line) and left out (`analysis.results.read_rows`)."""
  from icl_jax.analysis.results import read_rows

  return read_rows(path)


def _row_key(r: dict) -> tuple:
  return tuple(str(r.get(k)) for k in (
      "model", "mode", "source_task", "target_task", "layer", "condition",
      *EXTRA_KEYS))


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

def md_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
  if not rows:
    return "_(no rows)_\n"
  esc = lambda x: str(x).replace("|", "\\|").replace("\n", " ")
  lines = ["| " + " | ".join(esc(h) for h in headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
  for r in rows:
    lines.append("| " + " | ".join(esc(x) for x in r) + " |")
  return "\n".join(lines) + "\n"


def f2(x, nd=2) -> str:
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return "-"
  return f"{x:.{nd}f}"


def counts(rate: float, n: int) -> int:
  return int(round(rate * n))


def wilson_text(k: int, n: int) -> str:
  if not n:
    return "-"
  lo, hi = wilson_interval(k, n)
  return f"{k / n:.2f} [{lo:.2f}, {hi:.2f}]"


def mean(xs) -> float:
  xs = list(xs)
  return sum(xs) / len(xs) if xs else float("nan")


def pair(r) -> str:
  return f"{r.get('source_task')}->{r.get('target_task')}"


def patched(rows):
  """Cells that edited something (aligned maps can be empty when every
  token group differs in length between source and target)."""
  return [r for r in rows if r.get("n_positions", 1) != 0
          and r.get("changed", True) is not False]


def strict_transfer(r) -> float | None:
  if r.get("mode") == "aligned":
    return r.get("transfer")
  s = r.get("strict_scorer")
  return s.get("transfer") if isinstance(s, dict) else None


def short_model(m: str) -> str:
  return Path(str(m)).name if "/" in str(m) else str(m)


def depth(layer, n_layers) -> str:
  if layer is None or not n_layers:
    return "-"
  return f"{layer / n_layers:.2f}"


def by(rows, *keys):
  g = defaultdict(list)
  for r in rows:
    g[tuple(r.get(k) for k in keys)].append(r)
  return g


def layer_means(rows, metric="transfer"):
  """{layer: (mean over rows, pooled k, pooled n)}."""
  out = {}
  for (layer,), rs in by(rows, "layer").items():
    k = sum(counts(r[metric], r.get("n") or 1) for r in rs)
    n = sum(r.get("n") or 1 for r in rs)
    out[layer] = (mean(r[metric] for r in rs), k, n)
  return out


def best_layer(rows, metric="transfer"):
  lm = layer_means(rows, metric)
  if not lm:
    return None, None
  best = max(sorted(lm, key=lambda l: (l is None, l)),
             key=lambda l: lm[l][0])
  return best, lm[best]


def verdict_effect(k: int, n: int) -> str:
  if not n:
    return "not run"
  lo = wilson_interval(k, n)[0]
  return "yes" if lo >= EFFECT_LB else ("weak" if lo >= WEAK_LB else "no")


def images(data: Data, paths: Sequence[Path], limit: int = 4) -> str:
  out = []
  for p in paths[:limit]:
    out.append(f"![{p.stem}]({data.rel(p)})")
  if len(paths) > limit:
    out.append("More plots: " + ", ".join(
        f"[{p.name}]({data.rel(p)})" for p in paths[limit:]))
  return ("\n\n".join(out) + "\n") if out else ""


def plots_and_notes(data: Data, experiment: str, rows,
                    notes: Sequence[str]) -> str:
  """The experiment's plots, then the artifact notes `notes`."""
  return (images(data, data.pngs(experiment)) + "\n" +
          artifact_notes(data, rows, notes))


def model_mode_rows(data: Data, rows, experiments: Sequence[str],
                    keep=None):
  """(model, mode, its rows) per model of `experiments` and mode, in order,
  skipping empty ones; `keep(row)` filters the rows first."""
  for m in data.models(experiments):
    for mode in ("faithful", "aligned"):
      x = [r for r in rows if r["model"] == m and r["mode"] == mode and
           (keep is None or keep(r))]
      if x:
        yield m, mode, x


# ---------------------------------------------------------------------------
# Multi-position sources and the three questions
# ---------------------------------------------------------------------------

def multi_rows(data: Data):
  """Rows for the multi-position question: main, else exp8, else exp23."""
  for name in ("main_prefill", "multi_position", "proper_stats"):
    rs = [r for r in data.get(name) if r.get("condition") in MULTI
          and r.get("timing", "prefill") == "prefill"]
    if rs:
      return name, rs
  return None, []


def multi_summary(data: Data, model: str, mode: str, rows):
  rs = patched([r for r in rows if r["model"] == model and
                r["mode"] == mode])
  if not rs:
    return None
  nl = data.n_layers(model)
  out = {"model": model, "mode": mode, "n_layers": nl}
  cond_best = {}
  for (cond,), crs in by(rs, "condition").items():
    layer, (m, k, n) = best_layer(crs)
    cond_best[cond] = (layer, m, k, n)
  cond = max(sorted(cond_best), key=lambda c: cond_best[c][1])
  layer, m, k, n = cond_best[cond]
  out.update(condition=cond, layer=layer, mean=m, k=k, n=n,
             depth=(layer / nl if nl and layer is not None else None))
  cell = max(rs, key=lambda r: (r["transfer"], -abs((r["layer"] or 0))))
  out["cell"] = cell
  out["cell_k"] = counts(cell["transfer"], cell["n"])
  out["verdict"] = verdict_effect(out["cell_k"], cell["n"])
  lmeans = layer_means([r for r in rs if r["condition"] == cond])
  top = lmeans[layer][0]
  out["band"] = sorted(l for l, v in lmeans.items()
                       if top > 0 and v[0] >= 0.5 * top)
  head = [r for r in rs if (r["source_task"], r["target_task"]) ==
          ("uppercase", "repeat_word") and r["condition"] == "all_demo"]
  if head:
    h = max(head, key=lambda r: r["transfer"])
    out["head"] = h
  strict = [strict_transfer(r) for r in rs
            if r["condition"] == cond and r["layer"] == layer]
  strict = [s for s in strict if s is not None]
  out["strict_mean"] = mean(strict) if strict else None
  return out


def answer_multi(data: Data) -> tuple[str, dict]:
  name, rows = multi_rows(data)
  if not rows:
    return ("**Not run** (needs `experiments/main.py`, "
            "`multi_position.py` or `proper_stats.py`).\n", {})
  lines = [f"Source: `{name}` rows, conditions all_demo / output_only, "
           "decoder = patched prompt forward with the patched K/V kept "
           "(the study's D3). Best layer = highest mean transfer over the "
           "pairs; rates pooled over the pairs at that layer with Wilson "
           "95% intervals; 'best cell' = the single (pair, layer, "
           "condition) with the highest transfer.\n"]
  table, found = [], {}
  for model in data.models([name]):
    for mode in ("faithful", "aligned"):
      s = multi_summary(data, model, mode, rows)
      empty = [r for r in rows if r["model"] == model and r["mode"] == mode
               and r not in patched([r])]
      if empty:
        lines.append(f"{short_model(model)} {mode}: {len(empty)} cells "
                     "patched no position (no token group of the same "
                     "length in source and target) and are left out.\n")
      if s is None:
        table.append([short_model(model), mode, "not run" if not empty
                      else "not measured (nothing patched)", "", "", "", "",
                      ""])
        continue
      found[(model, mode)] = s
      c = s["cell"]
      head = s.get("head")
      table.append([
          short_model(model), mode, f"**{s['verdict']}**",
          f"{s['condition']} L{s['layer']} (depth {f2(s['depth'])})",
          wilson_text(s["k"], s["n"]),
          f"{pair(c)} {c['condition']} L{c['layer']}: "
          f"{wilson_text(s['cell_k'], c['n'])}",
          (f"{head['transfer']:.2f} at L{head['layer']} (depth "
           f"{depth(head['layer'], s['n_layers'])})" if head else "-"),
          ", ".join(f"L{l}" for l in s["band"]) or "-"])
  lines.append(md_table(
      ["model", "mode", "transfer exists?", "best layer", "pooled transfer "
       "at best layer", "best cell", "uppercase->repeat_word (all_demo, "
       "its best layer)", "layers with >= half the best mean"], table))
  ref = ("Original (Llama-3B, N=10 / N=50): uppercase->repeat_word 0.90 / "
         "0.96 [0.865, 0.989] at layer 8 of 28 (depth 0.29), the lowest "
         "layer it tested; mean over the six pairs 0.167 at L8.")
  lines.append(ref + "\n")
  return "\n".join(lines), found


def answer_single(data: Data) -> tuple[str, dict]:
  pre = [r for r in data.get("main_prefill")
         if r.get("condition") == "last_demo_token"]
  d2 = [r for r in data.get("main_single_d2")]
  if not pre and not d2:
    return ("**Not run** (needs `experiments/main.py`, which evaluates the "
            "single position with both decoders).\n", {})
  out = {}
  table = []
  for model in data.models(MAIN_PARTS):
    for mode in ("faithful", "aligned"):
      for dec, rs in (("like-for-like (prefill, K/V kept)", pre),
                      ("study's D2 (first token only)", d2)):
        rs = [r for r in rs if r["model"] == model and r["mode"] == mode]
        if not rs:
          continue
        all_rs, rs = rs, patched(rs)
        skipped = len(all_rs) - len(rs)
        if not rs:
          table.append([short_model(model), mode, dec,
                        "**not measured**", "no cell patched a position "
                        "(answer-token groups differ in length; rerun with "
                        "--on_mismatch=truncate)", "-", f"0 of {skipped}"])
          continue
        k = sum(counts(r["transfer"], r["n"]) for r in rs)
        n = sum(r["n"] for r in rs)
        mx = max(rs, key=lambda r: r["transfer"])
        pooled = k / n if n else 0.0
        if k == 0:
          v = "**zero**"
        elif pooled < ZERO_RATE and mx["transfer"] <= EFFECT_LB:
          v = "**near zero**"
        else:
          v = "**not zero**"
        out[(model, mode, dec)] = {"k": k, "n": n, "max": mx}
        lo, hi = wilson_interval(k, n) if n else (0, 0)
        table.append([short_model(model), mode, dec, v,
                      f"{k}/{n} = {pooled:.3f} (95% upper {hi:.3f})",
                      f"{mx['transfer']:.2f} ({pair(mx)} L{mx['layer']})",
                      f"{len(rs)}" + (f" (+{skipped} that patched nothing, "
                                      "left out)" if skipped else "")])
  text = ("Position: the last demo's answer slot -- faithful: the study's "
          "`last_demo_token` index (the '\\n\\n' separator on BOS + merged-"
          "newline tokenizers), aligned: the last demo's final answer token. "
          "'Like-for-like' = the same decoder as the multi-position cells. "
          "Pooled over every pair and layer.\n\n")
  text += md_table(["model", "mode", "decoder", "single-position transfer",
                    "transferred prompts (pooled)", "max cell", "cells"],
                   table)
  text += ("\nOriginal: 0.0 at every layer (exp5: 4 pairs x 28 layers, "
           "N=10, D2 decoder; exp3: layer 14, 64 pairs).\n")
  return text, out


# ---------------------------------------------------------------------------
# Headline claims
# ---------------------------------------------------------------------------

def _cell_best(rows, **filt):
  rs = [r for r in rows if all(r.get(k) == v for k, v in filt.items())]
  if not rs:
    return None
  return max(rs, key=lambda r: r["transfer"])


def _fmt_cell(r, nl):
  if r is None:
    return "not run"
  return (f"{r['transfer']:.2f} (L{r['layer']}, depth {depth(r['layer'], nl)}"
          f", N={r['n']})")


def _effect(r):
  return verdict_effect(counts(r["transfer"], r["n"]), r["n"]) if r else None


def _survival(f_ok, a_ok):
  if f_ok is None and a_ok is None:
    return "not run"
  if f_ok and a_ok:
    return "holds as run and survives the corrections"
  if f_ok and a_ok is False:
    return "holds as run only; gone after the corrections"
  if f_ok is False and a_ok:
    return "not reproduced as run; present after the corrections"
  if f_ok is False and a_ok is False:
    return "not reproduced on this model"
  return "holds as run" if f_ok else (
      "survives the corrections" if a_ok else "partly run")


def _mode_row(model_label: str, claim: str, judge) -> list:
  """[model, claim, faithful text, aligned text, survival] of a claim whose
  `judge(mode) -> (ok, text)` is applied to both modes."""
  fo, ftx = judge("faithful")
  ao, atx = judge("aligned")
  return [model_label, claim, ftx, atx, _survival(fo, ao)]


def headline_rows(data: Data) -> list[list]:
  out = []
  models = data.models()
  name, mrows = multi_rows(data)
  stats_rows = data.get("proper_stats")
  for model in models or [None]:
    nl = data.n_layers(model) if model else None
    M = short_model(model) if model else "-"

    def cell(rows, mode, **f):
      return _cell_best(patched([r for r in rows if r.get("model") == model
                                 and r.get("mode") == mode]), **f)

    # 1. headline transfer
    src = stats_rows or mrows
    f = cell(src, "faithful", source_task="uppercase",
             target_task="repeat_word", condition="all_demo")
    a = cell(src, "aligned", source_task="uppercase",
             target_task="repeat_word", condition="all_demo")
    if f or a:
      out.append([M, "uppercase->repeat_word all_demo transfers (0.96 "
                  "[0.865, 0.989], N=50, L8/28)", _fmt_cell(f, nl),
                  _fmt_cell(a, nl), _survival(
                      None if f is None else _effect(f) != "no",
                      None if a is None else _effect(a) != "no")])
    f = cell(src, "faithful", source_task="uppercase",
             target_task="repeat_word", condition="output_only")
    a = cell(src, "aligned", source_task="uppercase",
             target_task="repeat_word", condition="output_only")
    if f or a:
      out.append([M, "output_only alone carries it (0.94, N=50)",
                  _fmt_cell(f, nl), _fmt_cell(a, nl), _survival(
                      None if f is None else _effect(f) != "no",
                      None if a is None else _effect(a) != "no")])
    # 2. depth
    fs = multi_summary(data, model, "faithful", mrows) if mrows else None
    as_ = multi_summary(data, model, "aligned", mrows) if mrows else None
    if fs or as_:
      def dtext(s):
        if not s or not s["mean"]:
          return "no transfer" if s else "not run"
        return f"L{s['layer']} = depth {f2(s['depth'])} (mean {s['mean']:.2f})"

      def dok(s):
        if not s or s.get("depth") is None or not s["mean"]:
          return None if not s else False
        return abs(s["depth"] - 0.30) <= DEPTH_TOL
      out.append([M, "~30% depth is the best layer", dtext(fs), dtext(as_),
                  _survival(dok(fs), dok(as_))])
    # 3. single position zero
    pre = patched([r for r in data.get("main_prefill")
                   if r.get("model") == model and
                   r.get("condition") == "last_demo_token"])
    d2 = patched([r for r in data.get("main_single_d2")
                  if r.get("model") == model])

    def ztext(rs):
      if not rs:
        return None, "not run / nothing patched"
      k = sum(counts(r["transfer"], r["n"]) for r in rs)
      n = sum(r["n"] for r in rs)
      return k == 0 or (k / n < ZERO_RATE), f"{k}/{n} prompts"
    fz, ft = ztext([r for r in d2 if r["mode"] == "faithful"])
    fz2, ft2 = ztext([r for r in pre if r["mode"] == "faithful"])
    az, at = ztext([r for r in pre if r["mode"] == "aligned"])
    if d2 or pre:
      out.append([M, "single-position transfer is 0 at every layer",
                  f"D2: {ft}; prefill: {ft2}", f"prefill: {at}",
                  _survival(fz if fz is not None else fz2, az)])
    # 4. input_only / last_demo zero at the best multi-position layer
    for cond in ("input_only", "last_demo"):
      rs = patched([r for r in (stats_rows or data.get("multi_position"))
                    if r.get("model") == model and
                    r.get("condition") == cond])
      if rs:
        def zt(mode):
          x = [r for r in rs if r["mode"] == mode]
          if not x:
            return None, "not run"
          mx = max(x, key=lambda r: r["transfer"])
          return mx["transfer"] <= WEAK_LB, (f"max {mx['transfer']:.2f} "
                                             f"({pair(mx)} L{mx['layer']})")
        out.append(_mode_row(M, f"{cond} gives 0 transfer", zt))
    # 5. controls
    crs = [r for r in data.get("controls") if r.get("model") == model]
    if crs:
      def ctext(mode):
        x = [r for r in crs if r["mode"] == mode]
        if not x:
          return None, "not run"
        true = [r for r in x if r["condition"] == "true_source"]
        bl, _ = best_layer(true) if true else (None, None)
        parts, ok = [], True
        for c in ("random_source", "shuffled", "noise"):
          cr = [r for r in x if r["condition"] == c and r["layer"] == bl]
          if cr:
            m = mean(r["transfer"] for r in cr)
            ok &= m <= WEAK_LB
            parts.append(f"{c} {m:.2f}")
        return ok, f"L{bl}: " + ", ".join(parts)
      out.append(_mode_row(
          M, "controls give 0% (as run: shuffled 0.092, 0.55 on the "
          "headline pair)", ctext))
    # 6. 56-pair mean
    prs = [r for r in data.get("pair_matrix") if r.get("model") == model
           and r.get("condition") == "all_demo"]
    if prs:
      def ptext(mode):
        x = [r for r in prs if r["mode"] == mode]
        if not x:
          return "not run"
        bl, (m, _, _) = best_layer(x)
        ge = sum(r["transfer"] >= 0.5 for r in x if r["layer"] == bl)
        n = sum(1 for r in x if r["layer"] == bl)
        return f"best L{bl}: mean {m:.3f}, {ge}/{n} pairs >= 0.5"
      out.append([M, "56-pair mean 16.7% (stored data: 12.3%, 7 pairs >= "
                  "0.5)", ptext("faithful"), ptext("aligned"),
                  "descriptive (compare)"])
    # 7. exp30
    srs = [r for r in data.get("source_demo_count") if r.get("model") == model
           and r.get("condition") == "all_demo"]
    if srs:
      def stext(mode):
        x = [r for r in srs if r["mode"] == mode]
        if not x:
          return None, "not run"
        bl, _ = best_layer([r for r in x if r.get("source_k") == 5]) \
            if any(r.get("source_k") == 5 for r in x) else best_layer(x)
        ks = {}
        for r in x:
          if r["layer"] == bl:
            ks.setdefault(r["source_k"], []).append(r["transfer"])
        text = ", ".join(f"k={k}: {mean(v):.2f}" for k, v in sorted(
            ks.items()))
        low = [mean(v) for k, v in ks.items() if k <= 3]
        hi = [mean(v) for k, v in ks.items() if k == 5]
        ok = None
        if low and hi:
          ok = max(low) <= WEAK_LB and hi[0] >= EFFECT_LB
        return ok, f"L{bl}: {text}"
      out.append(_mode_row(M, "1-3 source demos 0%, 5 demos 93%", stext))
    # 8. exp31
    ors = [r for r in data.get("output_positions")
           if r.get("model") == model]
    if ors:
      def otext(mode):
        x = [r for r in ors if r["mode"] == mode]
        if not x:
          return None, "not run"
        allp = [r for r in x if r["condition"] == "all_positions"]
        bl, _ = best_layer(allp) if allp else best_layer(x)
        pts = defaultdict(list)
        for r in x:
          if r["layer"] == bl and r["condition"] in ("random_outputs",
                                                     "all_outputs"):
            pts[r["size"] if r["condition"] == "random_outputs" else "all"]\
                .append(r["transfer"])
        small = [mean(v) for k, v in pts.items() if k != "all" and k <= 3]
        ok = None
        if small and pts.get("all"):
          ok = max(small) <= WEAK_LB and mean(pts["all"]) >= EFFECT_LB
        text = ", ".join(f"{k}: {mean(v):.2f}" for k, v in sorted(
            pts.items(), key=lambda kv: (kv[0] == "all", str(kv[0]).zfill(4))))
        return ok, f"L{bl}: {text}"
      out.append(_mode_row(
          M, "1-3 output positions 0%, all outputs 90%", otext))
    # 9. exp32
    vrs = [r for r in data.get("sentiment_variants")
           if r.get("model") == model and r.get("condition") == "all_demo"]
    if vrs:
      def vtext(mode):
        x = [r for r in vrs if r["mode"] == mode and r["source_task"] in
             ("sentiment", "sentiment_goodbad", "sentiment_symbol") and
             r["target_task"] in ("sentiment", "sentiment_goodbad",
                                  "sentiment_symbol")]
        if not x:
          return None, "not run"
        bl, (m, _, _) = best_layer(x)
        return m >= 0.4, f"best L{bl}: mean {m:.2f}"
      out.append(_mode_row(
          M, "sentiment variants transfer 58% on average", vtext))
    # 10. exp33 Part C
    crs = [r for r in data.get("variable_length") if r.get("model") == model
           and r.get("condition") == "all_demo/by_n"]
    if crs:
      def ctxt(mode):
        x = [r for r in crs if r["mode"] == mode and r.get("by_n")]
        if not x:
          return None, "not run"
        best = max(x, key=lambda r: r["by_n"].get("2", {}).get(
            "transfer", 0))
        b = best["by_n"]
        hi = [d for k, d in b.items() if int(k) >= 3]
        k3 = sum(d["transfer"] for d in hi)
        n3 = sum(d["n"] for d in hi)
        return (k3, n3), (f"L{best['layer']}: " + ", ".join(
            f"N={k} {d['transfer']}/{d['n']} (target-correct "
            f"{d['target_correct']})" for k, d in b.items()))
      (fk, ft), (ak, at) = ctxt("faithful"), ctxt("aligned")
      parts = ["N=2 'transfer' ('w w') is by construction the target's own "
               "correct answer (11.2.4)"]
      for mode, k in (("as run", fk), ("corrected", ak)):
        if k is not None and k[1]:
          parts.append(f"{mode}: N>=3 transfer {k[0]}/{k[1]}" +
                       (" (the 0% half holds)" if k[0] == 0 else
                        " (the 0% half does not hold)"))
      out.append([M, "repeat_word->repeat_n 100% at N=2, 0% at N>=3", ft,
                  at, "; ".join(parts)])
    # 11. correlations
    trs = [r for r in data.get("template_similarity")
           if r.get("model") == model]
    for cond, claim in (("surface_vs_transfer", "r = -0.05 (surface "
                         "similarity vs transfer)"),
                        ("activation_vs_transfer", "r = 0.31 activation "
                         "similarity (never computed; 0.378)")):
      x = [r for r in trs if r["condition"] == cond and r.get("r") is not None]
      if x:
        def rt(mode):
          y = [r for r in x if r["mode"] == mode]
          if not y:
            return "not run"
          nl2 = y[0].get("n_layers") or nl
          sl = round(0.3 * nl2) if nl2 else None
          pick = [r for r in y if r["layer"] == sl] or y
          r0 = pick[0]
          return (f"r = {r0['r']:+.2f} [{r0['ci'][0]:+.2f}, "
                  f"{r0['ci'][1]:+.2f}] (L{r0['layer']})")
        out.append([M, claim, rt("faithful"), rt("aligned"),
                    "descriptive (compare)"])
    tok = [r for r in data.get("tokenization") if r.get("model") == model
           and r.get("condition") == "correlation"]
    if tok:
      out.append([M, "r(|output-token diff|, transfer) = -0.35 (6 pairs)",
                  *correlation_cells(tok), "descriptive (6 points)"])
  return out


def correlation_cells(rows) -> tuple[str, str]:
  """The faithful and the aligned cell of a correlation claim: each mode's
  rows (one per rates source) in its own column. Rows of two modes share a
  rates label ("our ... (best layer)"), so they are never keyed by it alone."""
  cells = []
  for mode in ("faithful", "aligned"):
    rs = [r for r in rows if r.get("mode") == mode and r.get("r") is not None]
    cells.append("; ".join(
        f"{r['rates']}: r = {r['r']:+.2f}" +
        (f" (L{r['layer']})" if r.get("layer") is not None else "")
        for r in rs) or "-")
  return cells[0], cells[1]


def answer_headlines(data: Data) -> str:
  rows = headline_rows(data)
  if not rows:
    return "**Nothing to compare yet** (no result directories).\n"
  text = ("Each claim checked on our models: 'as run' = faithful mode (the "
          "study's positions, scorers and, for single positions, its D2 "
          "decoder); 'corrected' = aligned mode (token-exact positions "
          "mapped by demo/role/index, never into the query; strict "
          "scorers; the same decoder for single and multi positions). An "
          f"effect claim holds when the Wilson lower bound of the best cell "
          f">= {WEAK_LB}; a zero claim when at most {WEAK_LB:.0%} transfer "
          f"(pooled rate < {ZERO_RATE} for the single position); the depth "
          f"claim within +-{DEPTH_TOL} of 0.30.\n\n")
  text += md_table(["model", "original claim", "ours, as run (faithful)",
                    "ours, corrected (aligned)", "verdict"], rows)
  return text


# ---------------------------------------------------------------------------
# Per-experiment renderers
# ---------------------------------------------------------------------------

def render_baseline(data: Data, rows) -> str:
  models = data.models(["baseline"])
  tasks = [t for t in R.BASELINE if any(r.get("source_task") == t
                                        for r in rows)]
  tasks += sorted({r.get("source_task") for r in rows} - set(tasks) -
                  {None})
  # One column pair per (model, mode): faithful = the study's fixed demos,
  # aligned = demos sampled per prompt (the rows' demo_mode); each with its
  # mode's scorer (Wilson 95%) and the other scorer beside it.
  cols = [(m, mode) for m in models for mode in ("faithful", "aligned")
          if any(r.get("model") == m and r.get("mode") == mode for r in rows)]
  head = ["task"]
  for m, mode in cols:
    demos = sorted({str(r.get("demo_mode")) for r in rows
                    if r.get("model") == m and r.get("mode") == mode} -
                   {"None"})
    label = f"{short_model(m)} {mode}" + (f" ({'/'.join(demos)} demos)"
                                           if demos else "")
    other = "strict" if mode == "faithful" else "faithful scorer"
    head += [label, f"{short_model(m)} {mode}, {other}"]
  head += [R.MODEL_LABELS[m] for m in R.ORIGINAL_MODELS]
  table = []
  for t in tasks:
    line = [t]
    for m, mode in cols:
      rs = [r for r in rows if r.get("model") == m and r.get("mode") == mode
            and r.get("source_task") == t]
      r = rs[0] if rs else None
      if r is None:
        line += ["-", "-"]
        continue
      n = r.get("n", 0)
      af = r.get("accuracy_faithful", r.get("preserve"))
      ast = r.get("accuracy_strict")
      main, other = (af, ast) if mode == "faithful" else (ast, af)
      line += [wilson_text(counts(main, n), n) if main is not None else "-",
               f2(other)]
    line += [f2(R.BASELINE.get(t, {}).get(m)) for m in R.ORIGINAL_MODELS]
    table.append(line)
  text = md_table(head, table)
  text += ("\nOriginal: N=50, 5 fixed demos, first RNG call; "
           + R.BASELINE_NOTES + "\n")
  return text


def _layers_always_shown(rows, models, data, metric) -> set:
  """Columns a subsampled layer grid keeps: each model's study layer (the
  original's depth, 8 of 28) and each (model, mode, condition)'s best
  layer, so thinning never hides the layers the text talks about."""
  from icl_jax.studies.layers import study_fraction_layer

  keep = set()
  for m in models:
    nl = data.n_layers(m) if data is not None else None
    if nl:
      keep |= set(study_fraction_layer(nl))
  groups = defaultdict(list)
  for r in rows:
    if isinstance(r.get("layer"), int) and _numeric(r.get(metric)):
      groups[(r.get("model"), r.get("mode"), r.get("condition"))].append(r)
  for rs in groups.values():
    lm = layer_means(rs, metric)
    keep.add(max(sorted(lm), key=lambda l: lm[l][0]))
  return keep


def _transfer_grid(rows, models, conditions, data, pair_filter=None,
                   metric="transfer", max_layers=None):
  """Mean transfer over pairs by (model, mode, condition) x layer."""
  layers = sorted({r["layer"] for r in rows if isinstance(r.get("layer"),
                                                          int)})
  if max_layers and len(layers) > max_layers:
    step = -(-len(layers) // max_layers)
    shown = set(layers[::step])
    # A row whose layers all fall between the shown columns (exp12's skip
    # groups, one layer each) keeps its own columns.
    groups = defaultdict(set)
    for r in rows:
      if isinstance(r.get("layer"), int):
        groups[(r.get("model"), r.get("mode"), r.get("condition"))].add(
            r["layer"])
    for g in groups.values():
      if not g & shown:
        shown |= g
    shown |= _layers_always_shown(rows, models, data, metric) & set(layers)
    layers = sorted(shown)
  head = ["model", "mode", "condition"] + [f"L{l}" for l in layers]
  out = []
  for m in models:
    for mode in ("faithful", "aligned"):
      for c in conditions:
        rs = [r for r in rows if r.get("model") == m and r.get("mode") == mode
              and r.get("condition") == c and
              (pair_filter is None or pair_filter(r))]
        if not rs:
          continue
        lm = layer_means(rs, metric)
        out.append([short_model(m), mode, c] + [
            f2(lm[l][0]) if l in lm else "" for l in layers])
  return md_table(head, out)


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


def render_main(data: Data) -> str:
  pre = data.get("main_prefill")
  d2 = data.get("main_single_d2")
  models = data.models(MAIN_PARTS)
  text = ""
  if pre:
    text += "Mean transfer over the pairs, by layer (prefill decoder):\n\n"
    text += _transfer_grid(pre, models, ("all_demo", "output_only",
                                         "last_demo_token"), data)
  if d2:
    text += "\nSingle position with the study's D2 decoder:\n\n"
    text += _transfer_grid(d2, models, ("last_demo_token",), data)
  for s in data.main_summaries:
    rows = []
    for x in s.get("summary", []):
      ci = x.get("transfer_ci") or (None, None)
      rows.append([short_model(s.get("model")), x["mode"], x["condition"],
                   x["timing"],
                   "none" if x["best_layer"] is None else x["best_layer"],
                   f2(x["depth_fraction"]),
                   f"{f2(x['transfer'], 3)} [{f2(ci[0], 3)}, {f2(ci[1], 3)}]",
                   f2(x.get("headline_pair_transfer"))])
    if rows:
      text += "\n`main_summary.json`:\n\n" + md_table(
          ["model", "mode", "condition", "decoder", "best L", "depth",
           "pooled transfer [95% CI]", "up->rep"], rows)
  text += "\n" + images(data, data.root_pngs + data.pngs("main_prefill"))
  text += "\n" + artifact_notes(data, pre + d2, ("positions_drift",
                                                 "separator_token",
                                                 "d2_decoder", "depth_grid"))
  return text


def _ref_exp8_table() -> str:
  rows = []
  for m, layers in R.EXP8_LAYERS.items():
    for c in R.EXP8_CONDITIONS:
      rows.append([R.MODEL_LABELS[m], c] + [
          f2(R.exp8_mean_transfer(m, l, c), 3) for l in layers] +
          [" / ".join(f"L{l}" for l in layers)])
  return md_table(["original model", "condition", "1st layer", "2nd", "3rd",
                   "4th", "layers"], rows)


def render_exp8(data: Data, rows) -> str:
  models = data.models(["multi_position"])
  text = ("Mean transfer over the pairs by layer (ours):\n\n" +
          _transfer_grid(rows, models, R.EXP8_CONDITIONS, data))
  text += ("\nHeadline pair uppercase->repeat_word (ours):\n\n" +
           _transfer_grid(rows, models, R.EXP8_CONDITIONS, data,
                          pair_filter=lambda r: (r["source_task"],
                                                 r["target_task"]) ==
                          ("uppercase", "repeat_word")))
  text += ("\nOriginal, mean transfer over the six pairs (N=10):\n\n" +
           _ref_exp8_table())
  text += ("\nOriginal best cell for uppercase->repeat_word: " + ", ".join(
      f"{R.MODEL_LABELS[m]} {v['transfer']:.2f} (L{v['layer']} "
      f"{v['condition']})" for m, v in R.EXP8_HEADLINE.items()) + ".\n\n")
  text += plots_and_notes(data, "multi_position", rows, (
      "positions_drift", "absolute_index", "source_first", "depth_grid"))
  return text


def render_exp23(data: Data, rows) -> str:
  table = []
  for m, mode, x in model_mode_rows(data, rows, ["proper_stats"]):
    for p in R.EXP8_PAIRS:
      for c in ("all_demo", "output_only"):
        rs = [r for r in x if (r["source_task"], r["target_task"]) == p and
              r["condition"] == c]
        if not rs:
          continue
        b = max(rs, key=lambda r: r.get("transfer_independent",
                                        r["transfer"]))
        ref = [v for (s, t, l, cc), v in R.EXP23.items()
               if (s, t) == p and cc == c]
        refb = max(ref, key=lambda v: v["transfer"]) if ref else None
        w = b.get("transfer_wilson") or wilson_interval(
            counts(b["transfer_independent"], b["n"]), b["n"])
        bs = b.get("transfer_bootstrap") or ["-", "-"]
        table.append([
            short_model(m), mode, f"{p[0]}->{p[1]}", c,
            f"L{b['layer']}", f2(b["transfer_independent"]),
            f"[{f2(w[0], 3)}, {f2(w[1], 3)}]",
            f"[{f2(bs[0])}, {f2(bs[1])}]" if bs[0] != "-" else "-",
            f2(b.get("preserve_independent")),
            (f"{refb['transfer']:.2f} [{refb['wilson'][0]:.3f}, "
             f"{refb['wilson'][1]:.3f}]" if refb else "-")])
  text = ("Best layer per pair and condition (ours, N as run; transfer and "
          "preserve counted independently as the original did):\n\n")
  text += md_table(["model", "mode", "pair", "condition", "best layer",
                    "transfer", "Wilson 95%", "bootstrap 95%", "preserve",
                    "original best (Llama-3B L8-17)"], table)
  for s in data.summaries.get("proper_stats", []):
    pm = [x for x in s.get("pair_means", []) if x["condition"] in MULTI]
    best = {}
    for x in pm:
      k = (x["mode"], x["condition"])
      if k not in best or x["mean_transfer"] > best[k]["mean_transfer"]:
        best[k] = x
    if best:
      text += ("\nMean over the pairs at the best layer, bootstrap over "
               f"pair rates ({short_model(s.get('config', {}).get('model'))})"
               ": " + "; ".join(
                   f"{m} {c} L{x['layer']}: {x['mean_transfer']:.3f} "
                   f"[{x['bootstrap'][0]:.3f}, {x['bootstrap'][1]:.3f}]"
                   for (m, c), x in sorted(best.items())) + ".\n")
  text += ("\nOriginal means over pairs: " + "; ".join(
      f"L{l} {c} {v[0]:.3f} [{v[1][0]:.3f}, {v[1][1]:.3f}]"
      for (l, c), v in R.EXP23_PAIR_MEANS.items()) + ".\n\n")
  text += plots_and_notes(data, "proper_stats", rows, (
      "positions_drift", "source_first"))
  return text


def render_exp27(data: Data, rows) -> str:
  models = data.models(["controls"])
  table = []
  for m, mode, x in model_mode_rows(data, rows, ["controls"]):
    true = [r for r in x if r["condition"] == "true_source"]
    bl, _ = best_layer(true) if true else best_layer(x)
    for c in R.EXP27_CONDITIONS:
      cr = [r for r in x if r["condition"] == c and r["layer"] == bl]
      if cr:
        table.append([short_model(m), mode, f"L{bl}", c,
                      f2(mean(r["transfer"] for r in cr), 3),
                      f2(mean(r["preserve"] for r in cr), 3),
                      f2(mean(r["neither"] for r in cr), 3),
                      f2(R.EXP27_MEAN_TRANSFER[c], 3)])
  text = ("Mean over the pairs at the layer where the true source transfers "
          "most (ours) vs the original (Llama-3B, L8, N=20):\n\n")
  text += md_table(["model", "mode", "layer", "control", "transfer",
                    "preserve", "neither", "original transfer"], table)
  text += ("\nOriginal headline pair uppercase->repeat_word: true 0.95, "
           "random 0, shuffled 0.55, noise 0 (README/MASTER: 'all controls "
           "0%').\n\n")
  text += "Mean transfer by layer (ours):\n\n" + _transfer_grid(
      rows, models, R.EXP27_CONDITIONS, data, max_layers=12)
  text += "\n" + plots_and_notes(data, "controls", rows, ("absolute_index",))
  return text


def render_exp29(data: Data, rows) -> str:
  models = data.models(["pair_matrix"])
  text = ""
  for m in models:
    nl = data.n_layers(m)
    for mode in ("faithful", "aligned"):
      x = [r for r in rows if r["model"] == m and r["mode"] == mode and
           r["condition"] == "all_demo"]
      if not x:
        continue
      sl = round(0.3 * nl) if nl else None
      bl, (bm, _, _) = best_layer(x)
      for lname, layer in (("study layer (depth 0.30)", sl),
                           ("best layer", bl)):
        lx = [r for r in x if r["layer"] == layer]
        if not lx or (lname == "best layer" and layer == sl):
          continue
        tasks = [t for t in R.CORE_TASKS if any(
            r["source_task"] == t for r in lx)]
        grid = {(r["source_task"], r["target_task"]): r["transfer"]
                for r in lx}
        vals = [r["transfer"] for r in lx]
        text += (f"**{short_model(m)}, {mode}, {lname} L{layer} (depth "
                 f"{depth(layer, nl)})**: mean {mean(vals):.3f} over "
                 f"{len(vals)} pairs; >=0.5: {sum(v >= 0.5 for v in vals)}, "
                 f"0.1-0.49: {sum(0.1 <= v < 0.5 for v in vals)}, <0.1: "
                 f"{sum(v < 0.1 for v in vals)}\n\n")
        text += md_table(["source \\ target"] + tasks, [
            [s] + ["-" if s == t else f2(grid.get((s, t)), 1)
                   for t in tasks] for s in tasks])
        text += "\n"
  tasks = list(R.CORE_TASKS)
  text += ("Original (Llama-3B, L8, N=10): mean 0.123; >=0.5: 7, 0.1-0.49: "
           "6, <0.1: 43 (paper: 16.7% and 7/10/40).\n\n")
  text += md_table(["source \\ target"] + tasks, [
      [s] + ["-" if s == t else f2(R.EXP29["transfer"][(s, t)], 1)
             for t in tasks] for s in tasks])
  text += "\n" + plots_and_notes(data, "pair_matrix", rows, (
      "absolute_index", "scorer_pattern", "scorer_uppercase_numbers",
      "scorer_sentiment", "length_degenerate"))
  return text


def render_exp30(data: Data, rows) -> str:
  table = []
  for m, mode, xm in model_mode_rows(data, rows, ["source_demo_count"]):
    for cond in sorted({r["condition"] for r in rows}):
      x = [r for r in xm if r["condition"] == cond]
      if not x:
        continue
      k5 = [r for r in x if r.get("source_k") == 5]
      bl, _ = best_layer(k5 or x)
      line = [short_model(m), mode, cond, f"L{bl}"]
      for k in R.EXP30_K:
        kr = [r for r in x if r.get("source_k") == k and r["layer"] == bl]
        line.append(f"{mean(r['transfer'] for r in kr):.2f} "
                    f"({kr[0]['n_positions']})" if kr else "-")
      table.append(line)
  table.append(["Llama-3B (original)", "faithful", "all_demo", "L8"] + [
      f"{R.EXP30_MEAN[k]:.3f}" for k in R.EXP30_K])
  text = ("Mean transfer over the pairs at the best layer for k=5 "
          "(patched positions in brackets, first pair):\n\n")
  text += md_table(["model", "mode", "condition", "layer"] +
                   [f"k={k}" for k in R.EXP30_K], table)
  text += "\n" + plots_and_notes(data, "source_demo_count", rows, (
      "exp30_confound",))
  return text


def render_exp31(data: Data, rows) -> str:
  table = []
  sizes = list(R.EXP31_SIZES)
  for m, mode, x in model_mode_rows(data, rows, ["output_positions"]):
    allp = [r for r in x if r["condition"] == "all_positions"]
    bl, _ = best_layer(allp or x)
    line = [short_model(m), mode, f"L{bl}"]
    for s in sizes:
      v = [r["transfer"] for r in x if r["layer"] == bl and
           r["condition"] == "random_outputs" and r.get("size") == s]
      line.append(f2(mean(v), 3) if v else "-")
    for c in ("all_positions", "all_outputs"):
      v = [r["transfer"] for r in x if r["layer"] == bl and
           r["condition"] == c]
      line.append(f2(mean(v), 3) if v else "-")
    structured = []
    for c in ("first_per_demo", "last_per_demo", "every_other",
              "first_demo", "last_demo"):
      v = [r["transfer"] for r in x if r["layer"] == bl and
           r["condition"] == c]
      if v:
        structured.append(f"{c} {mean(v):.2f}")
    line.append(", ".join(structured) or "-")
    table.append(line)
  table.append(["Llama-3B (original)", "faithful", "L8"] + [
      f2(R.EXP31_MEAN[s], 3) for s in sizes] +
      [f2(R.EXP31_MEAN["all_positions"], 3),
       f2(R.EXP31_MEAN["all_outputs"], 3), R.EXP31_PART_B])
  text = ("Mean transfer over pairs and random subsets vs number of output "
          "positions patched (+ all input positions), at the best layer for "
          "'all positions':\n\n")
  text += md_table(["model", "mode", "layer"] + [f"{s}" for s in sizes] +
                   ["inputs + all outputs", "all outputs, no inputs",
                    "Part B (structured, + inputs)"], table)
  text += "\n" + plots_and_notes(data, "output_positions", rows, (
      "exp31_all_point", "positions_drift"))
  return text


def render_exp32(data: Data, rows) -> str:
  table = []
  for m, mode, x in model_mode_rows(data, rows, ["sentiment_variants"]):
    base = {r["target_task"]: r["preserve"] for r in x
            if r["condition"] == "baseline"}
    tr = [r for r in x if r["condition"] == "all_demo"]
    bl, _ = best_layer(tr) if tr else (None, None)
    for (s, t), ref in R.EXP32.items():
      c = [r for r in tr if (r["source_task"], r["target_task"]) == (s, t)
           and r["layer"] == bl]
      if c:
        r = c[0]
        table.append([short_model(m), mode, f"L{bl}", f"{s}->{t}",
                      f"{r['transfer']:.2f} / {r['preserve']:.2f} / "
                      f"{r['neither']:.2f}",
                      f"{ref[0]:.2f} / {ref[1]:.2f} / {ref[2]:.2f}"])
    if base:
      table.append([short_model(m), mode, "-", "baselines", ", ".join(
          f"{k} {v:.2f}" for k, v in sorted(base.items())),
          "1.00 each"])
  text = md_table(["model", "mode", "layer (best mean)", "pair",
                   "ours T / P / N", "original T / P / N (L8)"], table)
  text += (f"\nOriginal mean over the 6 variant pairs: "
           f"{R.EXP32_VARIANT_MEAN}.\n\n")
  text += plots_and_notes(data, "sentiment_variants", rows, (
      "binary_floor", "scorer_sentiment"))
  return text


def render_exp33(data: Data, rows) -> str:
  models = data.models(["variable_length"])
  text = ""
  base = [r for r in rows if r["condition"] == "baseline"]
  if base:
    text += "Part A baselines:\n\n" + md_table(
        ["model", "mode", "task", "accuracy", "original"],
        [[short_model(r["model"]), r["mode"], r["target_task"],
          f2(r["preserve"]), f2(R.EXP33_BASELINES.get(r["target_task"]))]
         for r in sorted(base, key=lambda r: (r["model"], r["mode"],
                                              r["target_task"]))])
  b = [r for r in rows if r["condition"] == "all_demo"]
  if b:
    text += "\nPart B, transfer by layer:\n\n" + _transfer_grid(
        b, models, ("all_demo",), data, max_layers=12)
    table = []
    for m in models:
      for mode in ("faithful", "aligned"):
        for p in R.EXP33_PART_B:
          x = [r for r in b if r["model"] == m and r["mode"] == mode and
               (r["source_task"], r["target_task"]) == p]
          if x:
            mx = max(x, key=lambda r: r["transfer"])
            table.append([short_model(m), mode, f"{p[0]}->{p[1]}",
                          f"{mx['transfer']:.2f} (L{mx['layer']})",
                          f2(max(v[0] for v in R.EXP33_PART_B[p].values()))])
    text += "\nBest cell per pair:\n\n" + md_table(
        ["model", "mode", "pair", "max transfer (layer)",
         "original max (L4-15)"], table)
  c = [r for r in rows if r["condition"] == "all_demo/by_n"]
  if c:
    table = []
    for r in sorted(c, key=lambda r: (r["model"], r["mode"], r["layer"])):
      bn = r.get("by_n") or {}
      if not any(d["transfer"] for d in bn.values()) and r["layer"] not in (
          round(0.3 * (r.get("n_layers") or 28)),):
        continue
      table.append([short_model(r["model"]), r["mode"], f"L{r['layer']}"] + [
          f"{bn.get(str(k), {}).get('transfer', '-')}/"
          f"{bn.get(str(k), {}).get('n', '-')} (tgt "
          f"{bn.get(str(k), {}).get('target_correct', '-')})"
          for k in (2, 3, 4, 5)])
    table.append(["Llama-3B (original)", "faithful", "L8"] + [
        f"{R.EXP33_PART_C[k][0]}/{R.EXP33_PART_C[k][1]}" for k in
        (2, 3, 4, 5)])
    text += ("\nPart C: repeat_word source -> repeat_n target, 'transfer' = "
             "output 'w w', by repeat count N (tgt = target-correct; shown: "
             "layers with any transfer and the depth-0.30 layer):\n\n")
    text += md_table(["model", "mode", "layer", "N=2", "N=3", "N=4", "N=5"],
                     table)
  text += "\n" + plots_and_notes(data, "variable_length", rows, (
      "scorer_repeat_n", "length_degenerate"))
  return text


def render_exp14(data: Data, rows) -> str:
  """exp14: part A accuracy by demo count k (mean over tasks), part B
  single-position transfer by k (mean over pairs), beside the original."""
  models = data.models(["demo_ablation"])
  ks = sorted({r["k"] for r in rows if isinstance(r.get("k"), int)})
  head = ["model", "mode", "part"] + [f"k={k}" for k in ks]
  out = []
  for m in models:
    for mode in ("faithful", "aligned"):
      for part, label, metric in (("A", "A: task accuracy", "accuracy"),
                                  ("B", "B: transfer", "transfer")):
        rs = [r for r in rows if r.get("model") == m and r.get("mode") == mode
              and r.get("part") == part and _numeric(r.get(metric))]
        if not rs:
          continue
        by_k = by(rs, "k")
        out.append([short_model(m), mode, label] + [
            f2(mean(r[metric] for r in by_k[(k,)])) if (k,) in by_k else ""
            for k in ks])
  out.append(["Llama-3B (original)", "as run", "A: task accuracy"] + [
      f2(R.EXP14[k][0]) if k in R.EXP14 else "" for k in ks])
  out.append(["Llama-3B (original)", "as run", "B: transfer"] + [
      f2(R.EXP14[k][2]) if k in R.EXP14 else "" for k in ks])
  text = md_table(head, out)
  layers = sorted({r["layer"] for r in rows if r.get("part") == "B" and
                   isinstance(r.get("layer"), int)})
  text += ("\nPart A: mean over tasks of the baseline accuracy with the first "
           "k demos (faithful: the study's fixed demos and scorer; aligned: "
           "strict scorer). Part B: single-position transplant at "
           f"layer(s) {', '.join(map(str, layers))}, mean over pairs. The "
           "original's constant 0.333 is pattern_completion->repeat_word "
           "scored by the lenient repeat_word scorer (protocol 11).\n")
  return text


def render_exp6(data: Data, rows) -> str:
  table = []
  for m in data.models(["ontology"]):
    nl = data.n_layers(m)
    for mode in ("faithful", "aligned"):
      x = sorted((r for r in rows if r["model"] == m and r["mode"] == mode),
                 key=lambda r: r["layer"])
      if not x:
        continue
      half = round(0.5 * nl) if nl else None
      pick = [r for r in x if r["layer"] == half] or x[len(x) // 2:][:1]
      best = max(x, key=lambda r: (r.get("silhouette") or -9))
      for lab, r in (("depth 0.5", pick[0]), ("max silhouette", best)):
        table.append([short_model(m), mode, r["condition"], lab,
                      f"L{r['layer']}", f2(r.get("silhouette"), 4),
                      f2(r.get("perm_p"), 3), f2(r["within"], 3),
                      f2(r["between"], 3),
                      (r.get("merge_labels") or [["-"]])[0][0]])
  table.append(["Llama-3B (original)", "faithful", "last_demo_token",
                "depth 0.5", f"L{R.EXP6_LAYER}", R.EXP6["silhouette"],
                R.EXP6["perm_p"], R.EXP6["within"], R.EXP6["between"],
                R.EXP6["merges"][0][0]])
  text = md_table(["model", "mode", "position", "which", "layer",
                   "silhouette (regimes)", "perm p", "within cos",
                   "between cos", "first merge"], table)
  text += "\n" + R.EXP6_NOTES + "\n\n"
  text += plots_and_notes(data, "ontology", [], (
      "separator_token", "fixed_demos"))
  return text


def render_exp19(data: Data, rows) -> str:
  table = []
  for r in sorted(rows, key=lambda r: (str(r.get("model")), r["mode"],
                                       str(r.get("layer")),
                                       r["condition"])):
    if r.get("r") is None:
      continue
    nl = r.get("n_layers")
    if (r["model"] != "llama-3.2-3b (original)" and nl and
        r["layer"] != round(0.3 * nl)):
      continue
    table.append([short_model(r["model"]), r["mode"], f"L{r['layer']}",
                  r["condition"], f"{r['r']:+.4f}", f"{r['p']:.4f}",
                  f"[{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}]", r["n_pairs"]])
  text = ("Pearson r over ordered pairs (shown: the original's data and our "
          "depth-0.30 layer; every layer is in results.jsonl):\n\n")
  text += md_table(["transfer from", "mode", "layer", "similarity", "r", "p",
                    "bootstrap 95% CI", "pairs"], table)
  text += (f"\nOriginal: r = {R.EXP19['r']} (p {R.EXP19['p']}, CI "
           f"{list(R.EXP19['ci'])}); the paper's activation-similarity r = "
           f"{R.EXP19['activation_r_paper']} was never computed (exp6 x "
           f"exp29 gives {R.EXP19['activation_r_recomputed']}).\n\n")
  text += plots_and_notes(data, "template_similarity", [], ("absolute_index",))
  return text


def render_exp28(data: Data, rows) -> str:
  from icl_jax.studies.tokenization import double_newline_text

  text = ""
  for m in data.models(["tokenization"]):
    facts = tokenization_facts(data, m) or {}
    tf = facts.get("tokenizer", {})
    text += (f"**{short_model(m)}**: BOS {tf.get('adds_bos')}, "
             f"{double_newline_text(tf)}; `last_demo_token` "
             f"is a {facts.get('last_demo_token_role')!r} token; faithful "
             f"output-line drift per demo {facts.get('output_line_drift_uppercase')}"
             f"; faithful all_demo overwrites target query tokens in "
             f"{facts.get('pairs_with_query_overwrite')}/"
             f"{facts.get('layout_pairs')} ordered pairs (the final, answer-"
             f"predicting token in "
             f"{facts.get('pairs_with_final_token_overwrite')}).\n\n")
    pr = [r for r in rows if r["model"] == m and
          r["condition"] == "pair_lengths"]
    if pr:
      text += md_table(
          ["pair", "prompt tokens src/tgt (no special)", "output counts "
           "match", "|mean diff|", "original lengths"],
          [[pair(r), f"{r['source_prompt_tokens']}/"
            f"{r['target_prompt_tokens']}", r["output_counts_match"],
            f2(r["mean_output_token_diff"]),
            "/".join(map(str, R.EXP28["prompt_lengths"].get(
                (r["source_task"], r["target_task"]), ("-",))))]
           for r in pr])
    cr = [r for r in rows if r["model"] == m and
          r["condition"] == "correlation" and r.get("r") is not None]
    if cr:
      text += "\n" + md_table(
          ["transfer rates", "mode", "r", "p", "pairs"],
          [[r["rates"], r["mode"], f"{r['r']:+.4f}", f"{r['p']:.4f}",
            r["n_pairs"]] for r in cr])
    text += "\n"
  text += (f"Original (Llama-3 tokenizer): r = {R.EXP28['r']} on 6 pairs, "
           "output-token counts uppercase [1,2,2,2,2], first_letter [1]*5, "
           "repeat_word [2]*5, length [2]*5.\n\n")
  text += plots_and_notes(data, "tokenization", [], (
      "positions_drift", "absolute_index"))
  return text


GENERIC_SKIP = {"n", "layer", "n_layers", "n_positions", "seed", "k",
                "size", "subset", "source_k", "max_residual_change",
                "max_new_tokens", "changed"}
GENERIC_SKIP_RE = re.compile(r"index|depth|^ci_|_ci$|std|seconds|count")
PREFERRED = ("transfer", "preserve", "accuracy", "accuracy_faithful",
             "accuracy_strict", "disruption", "td", "probe_accuracy")


def _numeric(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


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
      if k not in keys and _numeric(v) and k not in GENERIC_SKIP and \
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


def _drop_matrix_diagonal(rows):
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
  layered, n_diag = _drop_matrix_diagonal(layered)
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
               "\n\n") + _transfer_grid(
          [r for r in layered if _numeric(r.get(metric))],
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


REFERENCE_SNIPPETS = {
    "exp2": lambda: ("Original (Llama-3B, NearestCentroid): demo positions "
                     f"{R.EXP2_DEMO_PROBE} at every layer (one '\\n\\n' "
                     "token, identical within a task); first_query_token "
                     "peaks at " + f"{max(R.EXP2_FIRST_QUERY_PROBE):.3f} "
                     f"(L{R.EXP2_FIRST_QUERY_PROBE.index(max(R.EXP2_FIRST_QUERY_PROBE))})."),
    "exp3": lambda: (f"Original: layer {R.EXP3['layer']}, mean off-diagonal "
                     f"transfer {R.EXP3['mean_offdiag_transfer']} (all of it "
                     "the pattern_completion->repeat_word scorer artifact), "
                     f"preservation {R.EXP3['preservation']}; D2 decoder."),
    "exp4": lambda: ("Original: P(A) = 1.0 at every alpha for all 6 pairs; "
                     "arithmetic C-rate 1.0 (no change at all)."),
    "exp5": lambda: ("Original: single-position transfer 0.0 at every layer "
                     "0-27 for 4 pairs (D2 decoder)."),
    "exp7": lambda: ("Original: probe accuracy 1.0 at every layer (training "
                     "accuracy on identical vectors)."),
    "exp9": lambda: ("Original: transfer 0.0 at all 12 layers; preserve "
                     "uppercase->sentiment " + ", ".join(
                         f"L{l} {v}" for l, v in zip(
                             R.EXP9_PRESERVE["layers"],
                             R.EXP9_PRESERVE[("uppercase", "sentiment")])) +
                     "."),
    "exp10": lambda: ("Original accuracy after zeroing the demo residual "
                      "(incl. BOS), mean over 4 tasks: " + ", ".join(
                          f"L{l} {mean(R.EXP10_ACCURACY[t][i] for t in ('uppercase', 'first_letter', 'repeat_word', 'length')):.3f}"
                          for i, l in enumerate(R.EXP10_ACCURACY["layers"]))
                      + "."),
    "exp11": lambda: ("Original mean disruption at first_query_token "
                      "(Llama-3B, unit noise x2): " + ", ".join(
                          f"L{l} {v:.2f}" for l, v in R.EXP11["llama-3.2-3b"]
                          ["disruption"][("mean", "first_query_token")]
                          .items()) + "; demo position <= 0.07."),
    "exp12": lambda: ("Original mean accuracy drop after skipping one block "
                      "(prefill only): " + ", ".join(
                          f"L{l} {v:.3f}" for l, v in
                          R.EXP12_MEAN_DROP.items()) + "."),
    "exp13": lambda: ("Original transfer (answer-token positions, N=20): " +
                      "; ".join(f"{s}->{t} " + "/".join(
                          f"{v:.2f}" for v in d.values())
                          for (s, t), d in R.EXP13.items()) +
                      " (Llama-3B/Llama-1B/Qwen/Gemma; pattern->repeat_word "
                      "is the scorer artifact)."),
    "exp14": lambda: ("Original: mean task accuracy " + ", ".join(
        f"k={k} {v[0]:.3f}" for k, v in R.EXP14.items()) +
                      "; transfer constant 0.333 (scorer artifact)."),
    "exp15": lambda: ("Original transfer: " + ", ".join(
        f"{s}->{t} {v:.2f}" for (s, t), v in R.EXP15.items()) + "."),
}


def guess_study_id(name: str):
  for pat, sid, title in GUESSES:
    if re.search(pat, name):
      return sid, title
  return None, None


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------

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
EXTRA_RENDERERS = {"demo_ablation": render_exp14}


def _config_brief(d: Path) -> str:
  """N, layer count and on_mismatch from a run directory's config.json."""
  try:
    cfg = json.loads((Path(d) / "config.json").read_text())
  except (OSError, json.JSONDecodeError):
    return "-"
  if not isinstance(cfg, dict):
    return "-"
  cfg = cfg.get("config", cfg) if isinstance(cfg.get("config"), dict) else cfg
  bits = []
  if cfg.get("n") is not None:
    bits.append(f"N={cfg['n']}")
  layers = cfg.get("layers")
  if isinstance(layers, (list, tuple)):
    bits.append(f"{len(layers)} layers")
  elif layers is not None:
    bits.append(f"layers={layers}")
  if cfg.get("on_mismatch"):
    bits.append(str(cfg["on_mismatch"]))
  return ", ".join(bits) or "-"


def _inventory(data: Data) -> str:
  rows = []
  for name, rs in sorted(data.rows.items()):
    models = sorted({short_model(r.get("model")) for r in rs})
    modes = sorted({str(r.get("mode")) for r in rs})
    rows.append([name, len(rs), ", ".join(models), ", ".join(modes),
                 "; ".join(_config_brief(d) for d in data.dirs[name]),
                 ", ".join(data.rel(d) + (" (unfinished)" if d in
                                          data.unfinished else "")
                           for d in data.dirs[name])])
  text = md_table(["experiment", "rows", "models", "modes",
                   "configuration (N prompts, layers, aligned mapping)",
                   "directory"], rows)
  if data.unfinished:
    text += ("\n(unfinished): the directory holds rows but no summary.json, "
             "which every script writes last: the run was interrupted and "
             "its numbers cover only the cells it finished. Re-running the "
             "same command resumes it.\n")
  ran_ids = set()
  known = {k for k, *_ in KNOWN} | set(MAIN_PARTS)
  for name in data.rows:
    for kn, sid, _, _ in KNOWN:
      if name == kn or (kn == "main" and name in MAIN_PARTS):
        ran_ids.add(sid)
    sid, _ = guess_study_id(name) if name not in known else (None, None)
    if sid:
      ran_ids.add(sid)
  if "main" in ran_ids:
    ran_ids.add("exp8")
  missing = [f"{sid} ({what})" for sid, what in STUDY_EXPERIMENTS
             if sid not in ran_ids]
  if missing:
    text += "\nNot run (no results found): " + ", ".join(missing) + ".\n"
  return text


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
           "## What was run\n", _inventory(data)]
  parts.append("## 1. Does multi-position transfer exist, and at which "
               "depth?\n")
  t1, _ = answer_multi(data)
  parts.append(t1)
  parts.append("## 2. Is single-position transfer zero under a like-for-like "
               "decoder?\n")
  t2, _ = answer_single(data)
  parts.append(t2)
  parts.append("## 3. Which of the original's headline numbers survive the "
               "corrections?\n")
  parts.append(answer_headlines(data))
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
  known = {k for k, *_ in KNOWN} | set(MAIN_PARTS)
  order = [g[1] for g in GUESSES]

  def rank(name):
    sid, _ = guess_study_id(name)
    return (order.index(sid) if sid in order else len(order), name)

  for name in sorted(set(data.rows) - known, key=lambda n: (
      int(re.sub(r"\D", "", guess_study_id(n)[0] or "") or 99), rank(n))):
    sid, t = guess_study_id(name)
    head = f"### {sid + ': ' if sid else ''}{t or name} (`{name}`)\n"
    if name in EXTRA_RENDERERS:
      body = _render_or_generic(
          lambda d, rs: (EXTRA_RENDERERS[name](d, rs) + "\n" +
                         images(d, d.pngs(name))), data, name, data.get(name))
    else:
      body = render_generic(data, name, data.get(name))
    if sid in REFERENCE_SNIPPETS:
      body += "\n" + REFERENCE_SNIPPETS[sid]() + "\n"
    parts += [head, body]
  parts.append("## The original's artifacts (protocol section 11)\n")
  lines = []
  for key, (sec, text, exps) in R.ARTIFACTS.items():
    affected = sorted(set(exps) & set(data.rows))
    lines.append(f"- **{sec}** {text}" + (
        f" Affects our: {', '.join(affected)}." if affected else ""))
  parts.append("\n".join(lines) + "\n")
  text = "\n".join(parts)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(text)
  return text
