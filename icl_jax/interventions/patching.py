"""Public calls: capture activations, run many patches in one sweep.

Both speak the coordinates of `icl_jax.interventions.api`: block indices
(-1 = embedding output) and each prompt's own token indices, never padded
rows or engine slots.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import numpy as np
import jax
import jax.numpy as jnp

from icl_jax.interventions.api import (HeadGroupPatch, Patch, answer_ids,
                                       cell_for, check_patches,
                                       resolve_positions, token_ids)
from icl_jax.interventions.engine import Engine, common_prefix_len
from icl_jax.interventions.spec import SITES, CellBatch, site_index
from icl_jax.models.decoder import embed, run_blocks
from icl_jax.models.generation import STOP_RULES, positions_from_mask
# Bytes of first-token logits held on the host at once (per engine call).
LOGITS_BUDGET = 512 << 20


# --------------------------------------------------------------------------
# Capture
# --------------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class Activations:
  """Activations of N prompts at some blocks, in token coordinates.

  Arrays are [len(layers), N, T, D] with T the longest prompt: row i holds
  prompt i's tokens 0..lengths[i]-1 (its token t at [.., i, t], as the
  tokenizer returns it), zeros after them. `resid` is the output of block
  `layers[j]` (-1: embedding output); `attn_out` / `mlp_out` (with
  components=True, or sites=) are the block's attention / MLP outputs
  before they are added to the residual (zeros for layer -1); `head_out`
  [len(layers), N, T, n_heads, D] (sites=("head_out",)) each head's
  output z_n W_O[n] (fp32; summed over heads it is the attention output
  before Gemma's post-attention norm). Sites are named as in `spec.SITES`
  ("resid" = "resid_post"); head_out reads take `heads` (an int or a list,
  summed: the group's output as a `Patch(site="head_out")` edits it).
  """

  layers: tuple
  lengths: np.ndarray  # int [N]
  token_ids: list
  resid: np.ndarray  # [n_layers_captured, N, T, D]
  attn_out: np.ndarray | None = None
  mlp_out: np.ndarray | None = None
  head_out: np.ndarray | None = None

  def _site(self, layer: int, site: str, heads=None) -> np.ndarray:
    site = SITES[site_index(site)]
    field = "resid" if site == "resid_post" else site
    arr = getattr(self, field)
    if arr is None:
      raise ValueError(f"{site} was not captured (capture(..., "
                       f"sites=[{site!r}]))")
    if layer not in self.layers:
      raise ValueError(f"layer {layer} not captured (have {self.layers})")
    if site != "resid_post" and layer < 0:
      raise ValueError(f"{site} has no layer -1 (the embeddings)")
    if (heads is None) != (site != "head_out"):
      raise ValueError("heads= goes with site 'head_out' (and it needs one)")
    arr = arr[self.layers.index(layer)]
    if heads is not None:
      h = [heads] if isinstance(heads, (int, np.integer)) else list(heads)
      arr = arr[:, :, h].sum(2)
    return arr

  def prompt(self, i: int, layer: int, site: str = "resid",
             heads=None) -> np.ndarray:
    """Prompt i's activations [T_i, D] at block `layer`."""
    return self._site(layer, site, heads)[i, :self.lengths[i]]

  def values(self, layer: int, positions="all",
             site: str = "resid", heads=None) -> list:
    """Per prompt, the activations [k_i, D] at `positions` (one spec for
    every prompt, resolved in each prompt's own tokens, or one per prompt):
    directly usable as per-prompt `Patch` values."""
    arr = self._site(layer, site, heads)
    n = len(self.lengths)
    per = isinstance(positions, (list, tuple)) and len(positions) == n and \
        all(not isinstance(p, (int, np.integer)) for p in positions)
    out = []
    for i in range(n):
      spec = positions[i] if per else positions
      pos = resolve_positions(spec, int(self.lengths[i]), f"prompt {i}: ")
      out.append(np.array(arr[i, pos]))
    return out

  def mean(self, layer: int, positions="all",
           site: str = "resid", heads=None) -> np.ndarray:
    """The mean [D] over every prompt's `positions` (for mean ablation)."""
    return np.concatenate(self.values(layer, positions, site,
                                      heads)).mean(0)


def layer_list(lm, layers, lowest: int = -1) -> list:
  """Block indices from "all" (lowest..n_layers-1), an int or a list."""
  L = lm.config.n_layers
  if isinstance(layers, str):
    if layers != "all":
      raise ValueError(f"layers must be 'all' or block indices, got "
                       f"{layers!r}")
    return list(range(lowest, L))
  if isinstance(layers, (int, np.integer)):
    layers = [layers]
  out = [int(x) for x in layers]
  bad = [x for x in out if not -1 <= x < L]
  if bad:
    raise ValueError(f"layer(s) {bad} outside the model (blocks 0..{L - 1},"
                     " or -1 for the embedding output)")
  return out


@functools.partial(jax.jit, static_argnames=("cfg",))
def head_outputs(cfg, params, tokens, mask):
  """Each head's output z_n W_O[n] [L,B,T,N,D] (fp32) of left-padded
  tokens [B,T] (the "head_out" site)."""
  q_pos, key_pos = positions_from_mask(mask)
  x = embed(cfg, params, tokens)
  _, _, rec = run_blocks(cfg, params, x, q_pos, key_pos, collect=("z",))
  wo = params["layers"]["block"]["attn"]["o"]  # [L,N,H,D]
  # fp32 accumulation, as the head_out edit computes the heads' sum.
  return jnp.einsum("LBTNH,LNHD->LBTND", rec["z"], wo,
                    preferred_element_type=jnp.float32)


def capture(lm, prompts, layers="all", components: bool = False,
            batch_size: int = 16, sites=None) -> Activations:
  """Residuals (and with components=True attention / MLP outputs) of
  `prompts` (strings, or token id lists) at blocks `layers` ("all" = -1 and
  every block; -1 = the embedding output). sites: the sites to capture
  besides the residual (names of `spec.SITES`; components=True means
  attn_out and mlp_out). Returns `Activations` arrays [len(layers), N, T,
  D] ([.., n_heads, D] for head_out), unpadded token coordinates."""
  ids = token_ids(lm, prompts)
  layers = layer_list(lm, layers)
  lengths = np.array([len(s) for s in ids])
  N, T, D = len(ids), int(lengths.max()), lm.config.d_model
  idx = np.asarray(layers)
  want = {SITES[site_index(s)] for s in (sites or ())}
  want |= {"attn_out", "mlp_out"} if components else set()
  want -= {"resid_post"}
  comps = bool(want & {"attn_out", "mlp_out"})
  out = {s: np.zeros((len(layers), N, T) + (
      (lm.config.n_heads, D) if s == "head_out" else (D,)), np.float32)
         for s in ["resid"] + sorted(want)}
  for b0 in range(0, N, batch_size):
    rows = list(range(b0, min(N, b0 + batch_size)))
    x, mask, lens = lm.pad_left([ids[i] for i in rows])
    res = lm(x, mask, return_residuals=True, return_components=comps,
             logits=None)
    got = {"resid": np.asarray(res.residuals)[idx + 1]}
    blk = np.maximum(idx, 0)
    for s in want:
      a = np.array(getattr(res, s) if s != "head_out" else head_outputs(
          lm.config, lm.params, jnp.asarray(x), jnp.asarray(mask)))[blk]
      a[idx < 0] = 0.0
      got[s] = a
    W = x.shape[1]
    for j, (i, n) in enumerate(zip(rows, lens)):
      for s, a in got.items():
        out[s][:, i, :n] = a[:, j, W - n:]
  return Activations(tuple(layers), lengths, ids, out["resid"],
                     out.get("attn_out"), out.get("mlp_out"),
                     out.get("head_out"))


# --------------------------------------------------------------------------
# Running patches
# --------------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class PatchResults:
  """Outcomes of K patches on N prompts, indexed [patch, prompt].

  tokens int [K,N,M] (greedy tokens, 0 after a row stopped), n_gen [K,N],
  texts [K][N] (decoded; "" without a tokenizer), delta [K,N] (max |edit|
  of the residual; for a patch shared by all prompts, the max over them),
  answer_tokens [N,A] / answer_logprobs [K,N,A] (log-softmax of the first
  generated position's logits at the answer tokens, when asked), logits
  [K,N,V] (first generated position, fp32, with return_logits), clean (the
  unpatched run as PatchResults with K=1, with baseline=True).
  """

  patches: list
  token_ids: list
  tokens: np.ndarray
  n_gen: np.ndarray
  texts: list
  delta: np.ndarray
  timing: str
  answer_tokens: np.ndarray | None = None
  answer_logprobs: np.ndarray | None = None
  logits: np.ndarray | None = None
  clean: "PatchResults | None" = None

  @property
  def first_token(self) -> np.ndarray:
    """int [K,N]: the first generated token."""
    return self.tokens[..., 0]

  def take(self, ks) -> "PatchResults":
    """The results of patches `ks` (indices), same prompts."""
    ks = list(ks)
    pick = lambda a: None if a is None else a[ks]
    return PatchResults(
        [self.patches[k] for k in ks], self.token_ids, self.tokens[ks],
        self.n_gen[ks], [self.texts[k] for k in ks], self.delta[ks],
        self.timing, self.answer_tokens, pick(self.answer_logprobs),
        pick(self.logits), self.clean)

  def table(self) -> list:
    """One dict per (patch, prompt): patch, label, edit, layer, prompt,
    text, tokens, first_token, delta (+ logprob, and clean_text /
    clean_logprob with a baseline). logprob is a float for one answer
    token, else a list."""
    rows = []
    for k, p in enumerate(self.patches):
      for n in range(len(self.token_ids)):
        r = dict(patch=k, label=p.label(), edit=p.edit, layer=p.layer,
                 prompt=n, text=self.texts[k][n],
                 tokens=self.tokens[k, n, :self.n_gen[k, n]].tolist(),
                 first_token=int(self.tokens[k, n, 0]),
                 delta=float(self.delta[k, n]))
        if self.answer_logprobs is not None:
          r["logprob"] = _scalar(self.answer_logprobs[k, n])
        if self.clean is not None:
          r["clean_text"] = self.clean.texts[0][n]
          if self.clean.answer_logprobs is not None:
            r["clean_logprob"] = _scalar(self.clean.answer_logprobs[0, n])
        rows.append(r)
    return rows


def _scalar(a):
  return float(a[0]) if len(a) == 1 else [float(x) for x in a]


def _log_softmax(x: np.ndarray) -> np.ndarray:
  m = x.max(-1, keepdims=True)
  return x - (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))


@dataclasses.dataclass
class _Out:
  """Host buffers the engine calls write into."""

  tokens: np.ndarray
  n_gen: np.ndarray
  texts: list
  delta: np.ndarray
  answers: np.ndarray | None
  logprobs: np.ndarray | None
  logits: np.ndarray | None

  @classmethod
  def empty(cls, K, N, M, V, answers, want_logits):
    return cls(np.zeros((K, N, M), np.int32), np.zeros((K, N), np.int32),
               [[""] * N for _ in range(K)], np.zeros((K, N), np.float32),
               answers, None if answers is None else
               np.zeros((K, N, answers.shape[1]), np.float32),
               np.zeros((K, N, V), np.float32) if want_logits else None)

  def write(self, res, ks, rows):
    """Engine results of cells (patches `ks`) on target prompts `rows`."""
    for j, k in enumerate(ks):
      self.tokens[k, rows] = res.tokens[j]
      self.n_gen[k, rows] = res.n_gen[j]
      self.delta[k, rows] = res.delta[j]
      for n, r in enumerate(rows):
        self.texts[k][r] = res.texts[j][n]
      if res.first_logits is None:
        continue
      if self.logits is not None:
        self.logits[k, rows] = res.first_logits[j]
      if self.answers is not None:
        lp = _log_softmax(res.first_logits[j])  # [n,V]
        self.logprobs[k, rows] = np.take_along_axis(
            lp, self.answers[rows], axis=1)


def _groups(cells: CellBatch, per_cell_bytes: int) -> list:
  """Cell index groups for engine calls: all at once, or by layer and in
  pieces when the first-token logits would not fit LOGITS_BUDGET."""
  C = len(cells)
  if per_cell_bytes * C <= LOGITS_BUDGET:
    return [np.arange(C)]
  step = max(1, LOGITS_BUDGET // max(per_cell_bytes, 1))
  out = []
  for layer in np.unique(cells.layer):
    idx = np.nonzero(cells.layer == layer)[0]
    out += [idx[s:s + step] for s in range(0, len(idx), step)]
  return out


def _run_cells(engine, targets, items, rows, decodes, out, want_logits):
  """Runs cells [(k, positions, values)] on `targets` (prompts `rows`)."""
  if not items:
    return
  D = engine.cfg.d_model
  cells = CellBatch.concat([
      cell_for(patch, pos, vals, decodes[k], targets.slots, D)
      for k, patch, pos, vals in items])
  ks = [it[0] for it in items]
  V = engine.cfg.vocab_size
  per = len(rows) * V * 4 if want_logits else 0
  for g in _groups(cells, per):
    res = engine.run(targets, cells.take(g), return_logits=want_logits)
    out.write(res, [ks[j] for j in g], rows)


def _plan(patches, ids, d_model):
  """Splits (patch, prompt) pairs into cells shared by all prompts and
  cells of one prompt: ([(k, patch, pos, vals)], {i: [...]})."""
  N = len(ids)
  shared, single = [], {i: [] for i in range(N)}
  for k, p in enumerate(patches):
    if isinstance(p, HeadGroupPatch):
      continue  # `_run_groups`
    res = [p.resolve(i, len(s), N, d_model) for i, s in enumerate(ids)]
    same = all(np.array_equal(r[0], res[0][0]) for r in res) and (
        not isinstance(p.values, tuple) or N == 1)
    if same:
      shared.append((k, p, *res[0]))
    else:
      for i, (pos, vals) in enumerate(res):
        single[i].append((k, p, pos, vals))
  return shared, single


def _run_groups(lm, ids, groups: dict, timing, max_new_tokens, stop, out):
  """Runs the HeadGroupPatch cells {k: patch} (`blockwise`: one forward
  per cell, the prompts' common prefix once) and writes their results."""
  from icl_jax.interventions.blockwise import BlockwiseEdit, blockwise_generate

  if not groups:
    return
  cfg = lm.config
  L, N, D = cfg.n_layers, cfg.n_heads, cfg.d_model
  if timing != "prefill":
    raise ValueError(f"head groups across layers run with timing 'prefill' "
                     f"only, not {timing!r}")
  P = common_prefix_len(ids)
  if P < 1:
    raise ValueError("head groups across layers need prompts sharing their "
                     "first token (e.g. BOS)")
  T = max(len(s) for s in ids)
  edits = []
  for p in groups.values():
    if p.heads[-1][0] >= L or max(max(h) for _, h in p.heads) >= N:
      raise ValueError(f"{p.label()}: outside the model ({L} blocks, {N} "
                       "heads)")
    res = [p.resolve(len(s), D) for s in ids]
    if any(not np.array_equal(r[0], res[0][0]) for r in res):
      raise ValueError(f"{p.label()}: positions must be the same token "
                       "indices in every prompt")
    pos, vals = res[0]
    mask = np.zeros(T, bool)
    mask[pos] = True
    values = np.zeros((L, T, D), np.float32)
    for l, v in vals.items():
      values[l, pos] = v
    edits.append(BlockwiseEdit(heads=p.mask(L, N), head_positions=mask,
                               head_values=values))
  res = blockwise_generate(lm, ids, P, edits, max_new_tokens=max_new_tokens,
                           stop=stop)
  res.delta = np.full((len(edits),), np.nan, np.float32)  # not measured
  out.write(res, list(groups), list(range(len(ids))))


def run_patches(lm, prompts, patches: Sequence[Patch], *,
                max_new_tokens: int = 8, timing: str = "prefill",
                stop: str = "line", answer_tokens=None,
                return_logits: bool = False, baseline: bool = False,
                **engine_options) -> PatchResults:
  """Runs every patch on every prompt (greedy decoding) in one engine sweep.

  Args:
    prompts: N strings (or token id lists), e.g. ICL prompts sharing demos.
    patches: K `Patch` objects (positions in each prompt's own tokens), or
      `HeadGroupPatch` objects (heads of several blocks together).
    max_new_tokens: M, the most tokens generated per row.
    timing: "prefill" (edit the prompt forward; the edited K/V stay in the
      cache), "first_token" (the first token from the edited prompt, later
      ones from the clean one) or "every_step" (prefill, and the edit again
      at every generated token, with the patch's decode vector).
    stop: "line" (end of the first non-empty line), "newline" or "eos".
    answer_tokens: optional; an int / str for every prompt, or one (or a
      list of A ints) per prompt: answer_logprobs [K,N,A] at the first
      generated position.
    return_logits: keep the first-position logits [K,N,V] (fp32).
    baseline: also run the unpatched prompts (`PatchResults.clean`).
    **engine_options: memory_budget, devices, chunk_cells (see `Engine`).
  Returns:
    PatchResults indexed [patch, prompt].
  """
  if isinstance(patches, Patch):
    patches = [patches]
  patches = list(patches)
  ids = token_ids(lm, prompts)
  if int(max_new_tokens) < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
  if stop not in STOP_RULES:
    raise ValueError(f"unknown stop rule {stop!r}; known: {STOP_RULES}")
  groups = {k: p for k, p in enumerate(patches)
            if isinstance(p, HeadGroupPatch)}
  dec = iter(check_patches(lm, [p for k, p in enumerate(patches)
                                if k not in groups], timing))
  decodes = [np.zeros(lm.config.d_model, np.float32) if k in groups
             else next(dec) for k in range(len(patches))]
  todo = patches + ([Patch.clean()] if baseline else [])
  decodes += [np.zeros(lm.config.d_model, np.float32)] * int(baseline)
  N, K = len(ids), len(todo)
  answers = (None if answer_tokens is None
             else answer_ids(lm, answer_tokens, N))
  shared, single = _plan(todo, ids, lm.config.d_model)
  engine = Engine(lm, max_new_tokens=int(max_new_tokens), stop=stop,
                  timing=timing, **engine_options)
  want_logits = return_logits or answers is not None
  out = _Out.empty(K, N, int(max_new_tokens), lm.config.vocab_size, answers,
                   return_logits)
  if shared:
    targets = engine.prepare(token_ids=ids)
    _run_cells(engine, targets, shared, list(range(N)), decodes, out,
               want_logits)
  P = common_prefix_len(ids)
  Q = max(len(s) for s in ids) - P
  for i, items in single.items():
    if items:
      targets = engine.prepare(token_ids=[ids[i]], prefix_len=P, query_len=Q)
      _run_cells(engine, targets, items, [i], decodes, out, want_logits)
  _run_groups(lm, ids, groups, timing, int(max_new_tokens), stop, out)
  res = PatchResults(todo, ids, out.tokens, out.n_gen, out.texts, out.delta,
                     timing, answers, out.logprobs, out.logits)
  if not baseline:
    return res
  full = res.take(range(len(patches)))
  full.clean = res.take([K - 1])
  return full
