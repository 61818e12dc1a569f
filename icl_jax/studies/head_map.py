"""Which attention heads carry multi-position transfer (issue 19, step 4).

On the public patching API and the study layer (setups, position maps,
scorers, rows):

  map      for a (source, target) pair in a mode, every (layer, head): the
           head's output (site head_out, heads=(h,)) replaced at the demo
           output positions (exp8's "output_only" set, the mode's position
           map, values = the per-position mean over the source prompts as
           exp8 writes residuals) by the source prompts' value; beside it
           the whole residual (resid_post) at the same positions, every
           layer, in one `run_patches` call. Per cell: transfer (the
           study's scorer, as exp8's rows) and the change from the clean
           run of log p(source answer) - log p(target answer) at the first
           generated position (attribution.py's metric; first tokens of
           " " + answer).
  groups   heads ranked by the map (transfer, then the metric's change);
           the top-k heads of a layer patched together (one head_out cell
           with heads=group; k = 2, 4, ... and all heads of the layer, which
           is the attn_out patch), compared with the best residual layer.
  global   all L x N heads ranked globally, by the map's change of the
           metric ("map") and separately by AIE ("aie"); the top-k heads
           (k = 1, 2, 4, ..., all) patched together across layers in one
           forward (`icl_jax.HeadGroupPatch`: every block's selected heads
           set to the source's clean head outputs at the same positions;
           an edit at block l changes what later blocks read), next to the
           best residual layer.
  aie      Todd et al. (2024)'s average indirect effect: per task, the mean
           over clean ICL prompts of each head's output at the last token;
           on corrupted prompts (the demo labels shuffled), that mean put in
           place of the head's output at the last token; AIE = mean over
           tasks and prompts of the increase of p(correct first token).

Rows: DESIGN.md rows (`plans.cell_row`, "transfer" style) keyed by layer
and condition ("resid_post", "head<h>", "top<k>", "baseline"; global groups:
layer None, "g<ranking>_top<k>", `group` [[layer, head], ...]); AIE rows
(another experiment directory) carry `aie` instead of rates.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from icl_jax.analysis.stats import spearman
from icl_jax.studies import plans, positions, setups
from icl_jax.studies.scoring import TaskScoring

EXPERIMENT = "head_map"
AIE_EXPERIMENT = "head_map_aie"
CONDITION = "output_only"  # exp8's demo-output set (both modes)
RESID = "resid_post"


def head_condition(h: int) -> str:
  return f"head{h}"


def group_ks(n_heads: int) -> list[int]:
  """Group sizes 2, 4, 8, ... below n_heads, then n_heads (k = 1 is the
  map's own cell)."""
  ks, k = [], 2
  while k < n_heads:
    ks.append(k)
    k *= 2
  return ks + ([n_heads] if n_heads > 1 else [])


def first_token(tok, text: str) -> int:
  """The first token of " " + text (the answer after "Output:")."""
  return int(tok(" " + text, add_special_tokens=False)["input_ids"][0])


# ---------------------------------------------------------------------------
# Positions, source values and answers of one (mode, pair)
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class PairInputs:
  """What every cell of one (mode, pair) shares."""

  mode: str
  setup: setups.PairSetup
  targets: list  # target prompt texts [N]
  pm: positions.PosMap  # source index -> target token, contributing sources
  acts: object  # icl_jax.Activations of the sources (every layer)
  answers: np.ndarray  # int [N, 2]: (source answer, target answer) tokens
  has_answer: np.ndarray  # bool [N]: the source task answers the query


def pair_inputs(lm, mode: str, setup, k: int = 5,
                on_mismatch: str = "truncate") -> PairInputs:
  """Source capture (residual and head outputs, every layer), the mode's
  output_only position map and the metric's answer tokens."""
  import icl_jax
  from icl_jax import tasks as T

  tok = lm.tokenizer
  sources = [e.prompt().text for e in setup.source_episodes]
  targets = [e.prompt().text for e in setup.target_episodes]
  acts = icl_jax.capture(lm, sources, layers="all", sites=["head_out"])
  if mode == "faithful":
    # Target tokens every target prompt has (a shared patch needs them).
    n_slots = min(len(tok(t)["input_ids"]) for t in targets)
    pm = positions.faithful_map(tok, sources, CONDITION, n_slots,
                                acts.lengths, k)
  else:
    pm = positions.aligned_map(tok, setup.source_episodes,
                               setup.target_episodes, CONDITION, on_mismatch)
  src = T.get_task(setup.source_task)
  ans, has = [], []
  for e in setup.target_episodes:
    try:
      s = src.answer(e.query)
    except Exception:  # pylint: disable=broad-except
      s = None
    has.append(s is not None)
    t_tok = first_token(tok, e.expected)
    ans.append([first_token(tok, s) if s is not None else t_tok, t_tok])
  return PairInputs(mode, setup, targets, pm, acts, np.asarray(ans),
                    np.asarray(has))


def site_values(inp: PairInputs, layer: int, site: str, head=None):
  """[len(pm), D]: the source values at the map's positions (per-position
  mean over the contributing source prompts, `plans.posmap_values`)."""
  if site == RESID:
    arr = inp.acts.resid[inp.acts.layers.index(layer)]  # [N,T,D]
  else:
    arr = inp.acts.head_out[inp.acts.layers.index(layer)][:, :, list(head)]
    arr = arr.sum(2)  # the group's summed output [N,T,D]
  return plans.posmap_values(arr, inp.pm)


def cell_patch(inp: PairInputs, layer: int, condition: str, heads=None,
               group=None):
  """The Patch of one cell: resid_post, head_out with `heads`, or (group:
  [(layer, head)]) a HeadGroupPatch across layers."""
  from icl_jax import HeadGroupPatch, Patch

  pos = list(inp.pm.tgt_idx)
  if group is not None:
    by = {}
    for l, h in group:
      by.setdefault(int(l), []).append(int(h))
    return HeadGroupPatch(by, pos, {l: site_values(inp, l, "head", hs)
                                    for l, hs in by.items()}, name=condition)
  if heads is None:
    return Patch.replace(layer, pos, site_values(inp, layer, RESID),
                         name=f"L{layer}.{condition}")
  return Patch.replace(layer, pos, site_values(inp, layer, "head", heads),
                       site="head_out", heads=tuple(heads),
                       name=f"L{layer}.{condition}")


# ---------------------------------------------------------------------------
# Cells -> rows
# ---------------------------------------------------------------------------

def metric_values(out, inp: PairInputs):
  """(patched metric [K,N], clean metric [N]); NaN where the source task
  has no answer for the query."""
  lp = out.answer_logprobs  # [K,N,2]
  m = lp[..., 0] - lp[..., 1]
  c = out.clean.answer_logprobs[0]
  clean = c[:, 0] - c[:, 1]
  m = np.where(inp.has_answer[None], m, np.nan)
  clean = np.where(inp.has_answer, clean, np.nan)
  return m, clean


def _mean(a) -> float | None:
  a = np.asarray(a, float)
  return float(np.nanmean(a)) if np.isfinite(a).any() else None


def run_cells(study, inp: PairInputs, cells: Sequence[dict]) -> list[dict]:
  """Runs cells ({layer, condition, heads or None}) on the targets in one
  `run_patches` call (plus the clean run); one row each, and a baseline
  row (the clean outputs)."""
  import icl_jax

  lm = study.lm
  patches = [cell_patch(inp, c["layer"], c["condition"], c.get("heads"),
                        c.get("group")) for c in cells]
  out = icl_jax.run_patches(lm, inp.targets, patches,
                            max_new_tokens=study.max_new_tokens,
                            timing="prefill", stop="line",
                            answer_tokens=[list(a) for a in inp.answers],
                            baseline=True)
  m, clean = metric_values(out, inp)
  common = dict(mode=inp.mode, experiment=study.experiment,
                model=study.model, n_layers=lm.n_layers, timing="prefill",
                positions=list(inp.pm.tgt_idx), stop="line",
                style="transfer")
  scoring = TaskScoring(inp.setup.source_task, inp.setup.target_task)
  rows = []
  for i, c in enumerate(cells):
    heads, group = c.get("heads"), c.get("group")
    meta = {"site": "head_out" if heads or group else RESID,
            "heads": None if heads is None else [int(h) for h in heads],
            "source_positions": [int(s) for s in inp.pm.src_idx],
            "logit_diff": _mean(m[i]),
            "logit_diff_change": _mean(m[i] - clean),
            "logit_diff_per_prompt": [None if not np.isfinite(v) else
                                      float(v) for v in m[i]]}
    if group is not None:  # delta is not measured for HeadGroupPatch
      meta.update(group=[[int(l), int(h)] for l, h in group],
                  ranking=c["ranking"], k=len(group),
                  max_residual_change=None, changed=None)
    rows.append(plans.cell_row(
        inp.setup, scoring, out.texts[i], layer=c["layer"],
        condition=c["condition"], delta=0.0 if group is not None else
        float(out.delta[i].max()), meta=meta, **common))
  base = plans.cell_row(
      inp.setup, scoring, out.clean.texts[0], layer=None,
      condition="baseline", delta=0.0,
      meta={"logit_diff": _mean(clean), "logit_diff_change": 0.0},
      **common)
  return rows + [base]


def map_cells(layers: Sequence[int], n_heads: int) -> list[dict]:
  """Every (layer, head) cell and the residual at every layer."""
  cells = [{"layer": int(l), "condition": head_condition(h), "heads": (h,)}
           for l in layers for h in range(n_heads)]
  return cells + [{"layer": int(l), "condition": RESID, "heads": None}
                  for l in layers]


def score(row: dict) -> tuple:
  """Ranking key of a map row: transfer, then the metric's change."""
  ld = row.get("logit_diff_change")
  return (row["transfer"], -np.inf if ld is None else ld)


def head_rows(rows: Sequence[dict]) -> list[dict]:  # single-head map cells
  return [r for r in rows if r.get("site") == "head_out"
          and str(r["condition"]).startswith("head")]


def ranked_heads(rows: Sequence[dict]) -> list[tuple[int, int]]:
  """(layer, head) of the map rows of one (mode, pair), best first (ties:
  lower layer, lower head)."""
  heads = head_rows(rows)
  heads.sort(key=lambda r: (tuple(-x for x in score(r)), r["layer"],
                            r["heads"][0]))
  return [(r["layer"], r["heads"][0]) for r in heads]


def group_cells(rows: Sequence[dict], n_heads: int) -> list[dict]:
  """Per layer, its top-k heads by the map (k from `group_ks`)."""
  order = ranked_heads(rows)
  cells = []
  for l in sorted({l for l, _ in order}):
    mine = [h for ll, h in order if ll == l]
    for k in group_ks(n_heads):
      cells.append({"layer": l, "condition": f"top{k}",
                    "heads": tuple(mine[:k])})
  return cells


def global_ks(n: int) -> list[int]:
  """1, 2, 4, ... below n, then n."""
  return [1] + group_ks(n)


def global_order(rows: Sequence[dict], aie: dict | None) -> dict:
  """{ranking: [(layer, head)] best first}: "map" by the metric's change
  (None last), "aie" by AIE (when given); ties: lower layer, head."""
  heads = head_rows(rows)
  keys = [(r["layer"], r["heads"][0]) for r in heads]
  ld = {k: (-np.inf if r.get("logit_diff_change") is None else
            r["logit_diff_change"]) for k, r in zip(keys, heads)}
  out = {"map": sorted(keys, key=lambda k: (-ld[k], k))}
  if aie:
    out["aie"] = sorted(keys, key=lambda k: (-aie[k], k))
  return out


def global_cells(rows: Sequence[dict], aie: dict | None) -> list[dict]:
  """The global top-k groups of each ranking (k from `global_ks`)."""
  return [{"layer": None, "condition": f"g{name}_top{k}", "ranking": name,
           "group": tuple(order[:k])}
          for name, order in global_order(rows, aie).items()
          for k in global_ks(len(order))]


# ---------------------------------------------------------------------------
# One (mode, pair): map, then groups (resumable by row key)
# ---------------------------------------------------------------------------

def _pending(study, mode: str, setup, cells) -> list[dict]:
  """The cells whose rows are not in the results yet."""
  key = lambda c: study.key(mode=mode, source_task=setup.source_task,
                            target_task=setup.target_task, layer=c["layer"],
                            condition=c["condition"])
  todo = set(study.pending([key(c) for c in cells]))
  return [c for c in cells if key(c) in todo]


def run_pair(study, mode: str, setup, layers, k: int = 5,
             on_mismatch: str = "truncate") -> list[dict]:
  """The map and the per-layer groups of one (mode, pair); returns the
  pair's rows (old and new)."""
  n_heads = study.lm.config.n_heads
  inp = None

  def mine():
    return [r for r in study.rows() if r["mode"] == mode and
            r["source_task"] == setup.source_task and
            r["target_task"] == setup.target_task]

  todo = _pending(study, mode, setup, map_cells(layers, n_heads))
  if todo:
    inp = pair_inputs(study.lm, mode, setup, k, on_mismatch)
    study.add(run_cells(study, inp, todo))
  study.tick(note=f"[{mode}] map {setup.source_task}->{setup.target_task}")
  todo = _pending(study, mode, setup, group_cells(
      [r for r in mine() if r["layer"] in layers], n_heads))
  if todo:
    inp = inp or pair_inputs(study.lm, mode, setup, k, on_mismatch)
    study.add([r for r in run_cells(study, inp, todo)
               if r["condition"] != "baseline"])
  study.tick(note=f"[{mode}] groups")
  return mine()


def run_global(study, mode: str, setup, rows, aie, layers, k: int = 5,
               on_mismatch: str = "truncate") -> list[dict]:
  """The global top-k groups of one (mode, pair); their rows (all)."""
  cells = global_cells([r for r in rows if r["layer"] in layers], aie)
  todo = _pending(study, mode, setup, cells)
  if todo:
    inp = pair_inputs(study.lm, mode, setup, k, on_mismatch)
    study.add([r for r in run_cells(study, inp, todo)
               if r["condition"] != "baseline"])
  study.tick(note=f"[{mode}] global groups")
  names = {c["condition"] for c in cells}
  return [r for r in study.rows() if r["mode"] == mode and
          r["source_task"] == setup.source_task and
          r["target_task"] == setup.target_task and r["condition"] in names]


# ---------------------------------------------------------------------------
# Summaries: groups vs the residual, global top-k
# ---------------------------------------------------------------------------

def pair_summary(rows: Sequence[dict], n_heads: int) -> dict:
  """For one (mode, pair)'s rows: the best residual layer, the head
  ranking, per k the best layer's top-k transfer, the first k reaching the
  best residual transfer, and per global ranking the top-k groups across
  layers (k, transfer, logit_diff_change, group) and the first k reaching
  the best residual transfer."""
  resid = [r for r in rows if r.get("condition") == RESID]
  best = max(resid, key=lambda r: (r["transfer"], -r["layer"]))
  order = ranked_heads(rows)
  by = {(r["layer"], r["condition"]): r for r in rows}
  curve = {}
  for k in [1] + group_ks(n_heads):
    vals = []
    for l in sorted({l for l, _ in order}):
      top = [hh for ll, hh in order if ll == l][0]  # the layer's best head
      r = by.get((l, head_condition(top) if k == 1 else f"top{k}"))
      if r is not None:
        vals.append((r["transfer"], l))
    if vals:
      t, l = max(vals, key=lambda v: (v[0], -v[1]))
      curve[k] = {"transfer": t, "layer": l}
  # Matching a residual transfer of 0 says nothing: no k then.
  reach = [k for k, v in curve.items() if best["transfer"] > 0
           and v["transfer"] >= best["transfer"]]
  glob = {}
  for r in sorted((r for r in rows if r.get("ranking")),
                  key=lambda r: r["k"]):
    glob.setdefault(r["ranking"], []).append({
        "k": r["k"], "transfer": r["transfer"], "group": r["group"],
        "logit_diff_change": r["logit_diff_change"]})
  first = {n: next((x["k"] for x in g if best["transfer"] > 0 and
                    x["transfer"] >= best["transfer"]), None)
           for n, g in glob.items()}
  return {"best_resid_layer": best["layer"],
          "best_resid_transfer": best["transfer"],
          "best_resid_logit_diff_change": best["logit_diff_change"],
          "global_first_k_reaching_resid": first,
          "top_heads": [list(x) for x in order[:10]],
          "best_layer_top_k": curve,
          "first_k_reaching_resid": min(reach) if reach else None,
          "global_top_k": glob}


# ---------------------------------------------------------------------------
# Average indirect effect (Todd et al. 2024)
# ---------------------------------------------------------------------------

def derangement(k: int, rng: np.random.RandomState) -> list[int]:
  """A permutation of range(k) with no fixed point (k >= 2)."""
  if k < 2:
    raise ValueError("shuffling demo labels needs at least 2 demos")
  while True:
    p = rng.permutation(k)
    if (p != np.arange(k)).all():
      return [int(i) for i in p]


def shuffled(episodes, perm: Sequence[int]) -> list:
  """The episodes with demo labels permuted: demo i gets label perm[i]
  (one permutation for every prompt: the demo block stays shared)."""
  out = []
  for e in episodes:
    ys = [y for _, y in e.demos]
    demos = tuple((x, ys[j]) for (x, _), j in zip(e.demos, perm))
    out.append(dataclasses.replace(e, demos=demos))
  return out


def aie_rows(lm, task: str, n: int, layers: Sequence[int], *, k: int = 5,
             seed: int = 0, experiment: str = AIE_EXPERIMENT,
             model: str = "") -> list[dict]:
  """One row per (layer, head) of `task`: `aie` = mean over the N
  corrupted prompts of p(correct first token) with the head's output at
  the last token set to its mean over the N clean ICL prompts' last
  tokens, minus p on the corrupted prompt (`p_corrupted`). One
  `run_patches` call for every head (max_new_tokens 1)."""
  import icl_jax

  eps = setups.task_setup(task, n, k).target_episodes
  perm = derangement(len(eps[0].demos), plans.seeded_rng(seed, n, k))
  bad = shuffled(eps, perm)
  acts = icl_jax.capture(lm, [e.prompt().text for e in eps], layers=layers,
                         sites=["head_out"])
  H = lm.config.n_heads
  cells = [(int(l), h) for l in layers for h in range(H)]
  patches = [icl_jax.Patch.replace(
      l, [-1], acts.mean(l, [-1], "head_out", heads=h), site="head_out",
      heads=h) for l, h in cells]
  answers = [first_token(lm.tokenizer, e.expected) for e in eps]
  out = icl_jax.run_patches(lm, [e.prompt().text for e in bad], patches,
                            max_new_tokens=1, answer_tokens=answers,
                            baseline=True)
  p = np.exp(out.answer_logprobs[..., 0].astype(np.float64))  # [K,N]
  p0 = np.exp(out.clean.answer_logprobs[0, :, 0].astype(np.float64))
  rows = []
  for i, (l, h) in enumerate(cells):
    rows.append({
        "experiment": experiment, "model": model, "mode": None,
        "source_task": None, "target_task": task, "layer": l,
        "condition": head_condition(h), "site": "head_out", "heads": [h],
        "n": len(eps), "aie": float((p[i] - p0).mean()),
        "p_patched": float(p[i].mean()), "p_corrupted": float(p0.mean()),
        "label_permutation": perm, "position": "last_token",
        "examples": [{"query": e.query, "expected": e.expected,
                      "p_corrupted": float(a), "p_patched": float(b)}
                     for e, a, b in zip(eps, p0, p[i])]})
  return rows


def aie_by_head(rows: Sequence[dict]) -> dict:
  """{(layer, head): mean AIE over the tasks of `rows`}."""
  acc = {}
  for r in rows:
    acc.setdefault((r["layer"], r["heads"][0]), []).append(r["aie"])
  return {k: float(np.mean(v)) for k, v in acc.items()}


def compare(map_rows: Sequence[dict], aie: dict, top: int = 10) -> dict:
  """The map's head ranking against the AIE ranking: overlap of the top
  `top` heads, Spearman over every head (map transfer, and the map's
  metric change)."""
  heads = head_rows(map_rows)
  keys = [(r["layer"], r["heads"][0]) for r in heads]
  a = [aie[k] for k in keys]
  by_aie = sorted(keys, key=lambda k: (-aie[k], k))[:top]
  by_map = ranked_heads(map_rows)[:top]
  ld = np.array([r.get("logit_diff_change") for r in heads], float)  # None: nan
  ok = np.isfinite(ld)
  return {"n_heads": len(keys), f"top{top}_overlap": len(
      set(by_aie) & set(by_map)) / max(1, min(top, len(keys))),
          "top_aie": [list(k) for k in by_aie],
          "top_map": [list(k) for k in by_map],
          "spearman_aie_vs_map_transfer": spearman(
              a, [r["transfer"] for r in heads]),
          "spearman_aie_vs_map_logit_diff_change": spearman(
              np.asarray(a)[ok], ld[ok]) if ok.sum() > 2 else None}


# ---------------------------------------------------------------------------
# The whole run: pairs x modes, AIE, plots, summary
# ---------------------------------------------------------------------------

def plot_pair(rows, path, model: str, n: int, title: str, n_heads: int,
              comparison: dict | None, aie: dict | None):
  """head x layer heatmaps (transfer, metric change; the residual as the
  last column), transfer vs k, AIE vs map scatter: PNGs under `path`."""
  from icl_jax.analysis import figures

  layers = sorted({r["layer"] for r in rows if r.get("site") == RESID})
  by = {(r["layer"], r["condition"]): r for r in rows}
  tag = title.replace(" ", "_").replace("->", "_to_")
  for metric, lim in (("transfer", (0.0, 1.0)), ("logit_diff_change", None)):
    m = np.full((len(layers), n_heads + 1), np.nan)
    for i, l in enumerate(layers):
      for j, c in enumerate([head_condition(h) for h in range(n_heads)]
                            + [RESID]):
        v = by.get((l, c), {}).get(metric)
        m[i, j] = np.nan if v is None else v
    if lim is None:
      a = float(np.nanmax(np.abs(m))) if np.isfinite(m).any() else 1.0
      lim = (-a, a)
    figures.heatmap(m, [str(l) for l in layers],
                    [str(h) for h in range(n_heads)] + ["resid"],
                    path / f"heads_{metric}_{tag}.png",
                    title=f"{model}\n{title}, N={n}: {metric}\n(head_out "
                    "/ resid_post at output_only)", vmin=lim[0], vmax=lim[1],
                    cmap="viridis" if metric == "transfer" else "RdBu_r",
                    xlabel="head", ylabel="layer")
  s = pair_summary(rows, n_heads)
  ks = sorted(s["best_layer_top_k"])
  lines = {"top-k heads of one layer (best layer)": (
      ks, [s["best_layer_top_k"][k]["transfer"] for k in ks]),
      f"whole residual, best layer (L{s['best_resid_layer']})": (
          ks, [s["best_resid_transfer"]] * len(ks))}
  figures.curves({f"{title} (N={n})": lines}, path / f"top_k_{tag}.png",
                 xlabel="k (heads patched together)", ylabel="transfer",
                 title=model, integer_x=True)
  g = s["global_top_k"]
  for metric, lim in (("transfer", (-0.05, 1.05)),
                      ("logit_diff_change", None)):
    lines = {f"global top-k by {name}": ([x["k"] for x in v],
                                         [x[metric] for x in v])
             for name, v in g.items()}
    xs = sorted({x["k"] for v in g.values() for x in v})
    lines[f"whole residual, best layer (L{s['best_resid_layer']})"] = (
        xs, [s["best_resid_" + metric]] * len(xs))
    figures.curves({f"{title} (N={n})": lines},
                   path / f"global_top_k_{metric}_{tag}.png", logx=True,
                   xlabel="k (top heads across layers, patched together)",
                   ylabel=metric, title=model, ylim=lim)
  if comparison and aie:
    heads = head_rows(rows)
    figures.scatter({title: ([aie[(r["layer"], r["heads"][0])]
                              for r in heads],
                             [r.get("logit_diff_change") or 0.0
                              for r in heads])},
                    path / f"aie_vs_map_{tag}.png",
                    xlabel="AIE (mean increase of p(correct), Todd et al.)",
                    ylabel="map: change of log p(src) - log p(tgt)",
                    title=f"{model}: Spearman "
                    f"{comparison['spearman_aie_vs_map_logit_diff_change']}")
  return s


def run_study(st, aie_st, *, pairs, modes, n: int, tasks, seed: int = 0,
              k: int = 5, on_mismatch: str = "truncate") -> dict:
  """Map and groups for every (mode, pair) in `st`, AIE over `tasks` in
  `aie_st` (None: skipped), then the global groups (ranked by the map and
  by AIE), plots; returns the summary (also in both summary.json)."""
  setups_ = setups.setup_pairs(pairs, n, k=k, seed=seed)
  st.start(3 * len(modes) * len(setups_) + len(tasks), unit="step")
  per = {}
  for mode in modes:
    for s in setups_:
      per[(mode, s.source_task, s.target_task)] = run_pair(
          st, mode, s, st.layers, k, on_mismatch)
  aie = None
  if aie_st is not None:
    rows = []
    for t in tasks:
      keys = [aie_st.key(mode=None, source_task=None, target_task=t,
                         layer=l, condition=head_condition(h))
              for l in st.layers for h in range(st.lm.config.n_heads)]
      if aie_st.pending(keys):
        aie_st.add(aie_rows(st.lm, t, n, st.layers, k=k, seed=seed,
                            model=aie_st.model))
      st.tick(note=f"AIE {t}")
    rows = [r for r in aie_st.rows() if r["target_task"] in tasks
            and r["layer"] in st.layers]
    aie = aie_by_head(rows)
  for (mode, src, tgt), rows in per.items():
    s = next(x for x in setups_ if (x.source_task, x.target_task) == (
        src, tgt))
    per[(mode, src, tgt)] = [r for r in rows if not r.get("ranking")] + \
        run_global(st, mode, s, rows, aie, st.layers, k, on_mismatch)
  out = {}
  for (mode, src, tgt), rows in per.items():
    rows = [r for r in rows if r["layer"] is None or r["layer"] in st.layers]
    title = f"{mode} {src}->{tgt}"
    comp = compare(rows, aie) if aie else None
    summ = plot_pair(rows, st.path, st.model, n, title,
                     st.lm.config.n_heads, comp, aie)
    out[title] = {**summ, "aie_comparison": comp}
  extra = {"pairs": out, "aie_tasks": list(tasks) if aie else None}
  st.finish(extra)
  if aie_st is not None:
    aie_st.finish({"tasks": list(tasks), "head_ranking": [
        [l, h, v] for (l, h), v in sorted(aie.items(),
                                          key=lambda x: -x[1])]})
  return out
