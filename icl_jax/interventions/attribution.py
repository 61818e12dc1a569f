"""Attribution patching: the linear estimate of every patch's effect from
one forward and one backward pass (Nanda's attribution patching; Kramar et
al. 2024, "AtP*").

For target (clean) prompts x and source prompts x', a scalar metric M of
the first generated position's logits (default: log p(source-task answer)
- log p(target-task answer), the transfer direction), and a site n at one
position t, patching n := n(x') changes M by about

    (n(x')[t] - n(x)[t]) . dM/dn[t]                              (AtP)

The gradients of every site come from one backward pass of the clean
forward with zero perturbations added at each site (`run_blocks` edits):
the residual after each block ("resid_post", and the embedding output),
each block's attention output ("attn_out", after Gemma's post-norm), the
heads' summed output before that norm (its gradient is every head's:
"head_out", head n's delta is its own z_n W_O[n] difference) and the MLP
output ("mlp_out"). Estimates are per (site, layer, prompt, position); a
set of positions patched together is estimated by the sum over the set.

AtP*'s fixes, as options:
  grad_drop (default off: it costs L backward passes): AtP*'s GradDrop
    against cancellation between paths: for each block l, the gradient with
    the backward pass through block l's attention and MLP outputs cut (so a
    component's own block gives it 0, hence L - 1); the score is
    sum_l |estimate_l| / (L - 1), a magnitude for ranking (no sign).
  qk_fix (default off): AtP*'s QK fix for the residual sites. Patching
    the residual entering block m at position s changes block m's queries
    at s and keys at s; AtP linearizes the softmax of those scores, which
    fails where attention saturates. With qk_fix the part of the estimate
    that flows through block m's attention scores is replaced by the exact
    change of block m's attention pattern (patched q'_s and k'_s, softmax
    recomputed; one patched key changes one column of a row, so each row's
    new softmax has a closed form), times dM/d(attention probabilities):
        estimate = AtP - <dM/dp, dp_linear> + <dM/dp, dp_exact>.
    Only the first attention reading the patched residual is made exact
    (later blocks, values and MLPs stay linear), as AtP* does for each
    head's queries and keys; component sites are unchanged.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import jax
import jax.numpy as jnp

from icl_jax.interventions.patching import capture
from icl_jax.interventions.api import answer_ids, token_ids
from icl_jax.models.decoder import (embed, final_logits, params_dtype,
                                    run_blocks)
from icl_jax.models.generation import positions_from_mask


def transfer_metric(logits, hidden, answers):
  """log p(source answer) - log p(target answer) [B] from the first
  generated position's logits [B,V] (fp32 log-softmax); answers = (source
  answer ids [B], target answer ids [B]); hidden (the last block's output
  [B,D]) unused. Any metric passed to `attribution_patching` has this
  signature."""
  src_ans, tgt_ans = answers
  lp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  b = jnp.arange(logits.shape[0])
  return lp[b, src_ans] - lp[b, tgt_ans]


def _dyn(a, l):
  return jax.lax.dynamic_index_in_dim(a, l, 0, keepdims=False)


def perturbed_metric(cfg, params, tokens, mask, eps, metric, answers,
                     drop=-1):
  """The metric [B] of left-padded tokens [B,T] with perturbations eps
  added at every site: eps = {"resid": [L+1,B,T,D] (embedding output, then
  each block's output), "attn", "head", "mlp": [L,B,T,D]} ("head" is added
  to the heads' sum before Gemma's post-attention norm). drop: a block
  whose attention / MLP outputs pass no gradient (GradDrop; -1: none).
  metric(logits [B,V], hidden [B,D], answers) -> [B] (`transfer_metric`).
  Returns (metric [B], records of the clean activations)."""
  q_pos, key_pos = positions_from_mask(mask)
  x = embed(cfg, params, tokens) + eps["resid"][0]
  cut = lambda l, v: jnp.where(l == drop, jax.lax.stop_gradient(v), v)

  def site_edit(l):
    return {"head_out": lambda z, wo, a: a + _dyn(eps["head"], l),
            "attn_out": lambda a: cut(l, a + _dyn(eps["attn"], l)),
            "mlp_out": lambda m: cut(l, m + _dyn(eps["mlp"], l))}

  y, _, rec = run_blocks(
      cfg, params, x, q_pos, key_pos,
      edit=lambda l, x_in, out: out + _dyn(eps["resid"], l + 1),
      site_edit=site_edit, collect=("resid", "attn_out", "mlp_out", "z"))
  logits = final_logits(cfg, params, y[:, -1:])[:, 0]  # [B,V]
  return metric(logits, y[:, -1], answers), (x, rec)


@functools.partial(jax.jit, static_argnames=("cfg", "metric"))
def site_gradients(cfg, params, tokens, mask, answers, metric=transfer_metric,
                   drop=-1):
  """One forward and one backward: (metric [B], gradients {resid, attn,
  head, mlp} shaped like eps, clean activations {resid [L+1,B,T,D],
  attn_out, mlp_out [L,B,T,D], head_out [L,B,T,N,D]})."""
  L, D = cfg.n_layers, cfg.d_model
  B, T = tokens.shape
  dt = params_dtype(params)  # perturbations in the activations' dtype
  eps = {"resid": jnp.zeros((L + 1, B, T, D), dt),
         **{k: jnp.zeros((L, B, T, D), dt) for k in ("attn", "head", "mlp")}}
  f = lambda e: (lambda m, aux: (m.sum(), (m, aux)))(
      *perturbed_metric(cfg, params, tokens, mask, e, metric, answers, drop))
  (_, (values, (x0, rec))), grads = jax.value_and_grad(f, has_aux=True)(eps)
  wo = params["layers"]["block"]["attn"]["o"]  # [L,N,H,D]
  acts = {"resid": jnp.concatenate([x0[None], rec["resid"]], 0),
          "attn_out": rec["attn_out"], "mlp_out": rec["mlp_out"],
          # fp32, as `capture` and the head_out edit form it.
          "head_out": jnp.einsum("LBTNH,LNHD->LBTND", rec["z"], wo,
                                 preferred_element_type=jnp.float32)}
  return values, grads, acts


@dataclasses.dataclass(eq=False)
class Attribution:
  """Linear estimates of patching effects on the metric, per site.

  resid [L+1,N,T] (row 0: the embedding output = layer -1, row l+1: block
  l's output), attn_out / mlp_out [L,N,T], head_out [L,N,T,n_heads]; T the
  longest target prompt, token coordinates (zeros past a prompt's end and
  where a position has no source). metric [N]: the clean metric.
  With grad_drop the arrays are GradDrop magnitudes (>= 0).
  """

  resid: np.ndarray
  attn_out: np.ndarray
  head_out: np.ndarray
  mlp_out: np.ndarray
  metric: np.ndarray
  lengths: np.ndarray
  grad_drop: bool = False

  def over(self, site: str, positions) -> np.ndarray:
    """The estimate of patching `positions` together (a bool mask [N,T] or
    one index list per prompt), per layer (and head) and prompt: [L', N]
    or [L, N, n_heads]."""
    arr = getattr(self, site)
    m = np.zeros(arr.shape[1:3], np.float32)
    if isinstance(positions, np.ndarray) and positions.dtype == bool:
      m[:, :positions.shape[1]] = positions
    else:
      for i, p in enumerate(positions):
        m[i, list(p)] = 1.0
    if arr.ndim == 4:
      return np.einsum("LNTH,NT->LNH", arr, m)
    return np.einsum("LNT,NT->LN", arr, m)


def _softcap(cfg, raw):
  """Scaled (and soft-capped) attention logits from raw q.k, and their
  derivative (fp32)."""
  s = raw * cfg.attn_scale
  if cfg.attn_logit_softcap is None:
    return s, jnp.full_like(s, cfg.attn_scale)
  t = jnp.tanh(s / cfg.attn_logit_softcap)
  return t * cfg.attn_logit_softcap, cfg.attn_scale * (1.0 - t * t)


@functools.partial(jax.jit, static_argnames=("cfg",))
def qk_correction(cfg, params, m, x_in, x_new, q_pos, key_pos, g_head):
  """AtP*'s QK fix at block m: per position s [B,T], (exact - linear)
  change of M through block m's attention scores when the residual
  entering block m at s goes from x_in [B,T,D] to x_new [B,T,D].

  g_head [B,T,D]: dM/d(block m's heads' summed output, pre-norm).
  Letters: i query, j key, K kv heads, R queries per kv head.
  """
  names = ("q", "k", "v", "scores")

  def qkv(x):
    _, _, rec = run_blocks(cfg, params, x, q_pos, key_pos, start=m,
                           stop=m + 1, collect=names)
    return {n: _dyn(rec[n], m).astype(jnp.float32) for n in names}

  c, tan = jax.jvp(qkv, (x_in,), (x_new - x_in,))  # clean, linear change
  new = qkv(x_new)  # q'_s, k'_s: q / k are position-wise in x
  B, T, N, H = c["q"].shape
  K = cfg.n_kv_heads
  R = N // K
  rs = lambda a: a.reshape(B, T, K, R, H)
  q, dq, qn = rs(c["q"]), rs(tan["q"]), rs(new["q"])
  k, dk, kn, v = c["k"], tan["k"], new["k"], c["v"]
  allowed = c["scores"] > 0.5 * float(np.finfo(np.float32).min)
  p = jax.nn.softmax(c["scores"], axis=-1)  # [B,K,R,i,j] fp32 as the model
  wo = _dyn(params["layers"]["block"]["attn"]["o"], m).astype(jnp.float32)
  gz = rs(jnp.einsum("BiD,NHD->BiNH", g_head.astype(jnp.float32), wo))
  g = jnp.einsum("BiKRH,BjKH->BKRij", gz, v)  # dM/dp
  G = jnp.sum(g * p, -1, keepdims=True)  # [B,K,R,i,1]
  raw = jnp.einsum("BiKRH,BjKH->BKRij", q, k)
  s0, ds = _softcap(cfg, raw)
  off = allowed & ~jnp.eye(T, dtype=bool)  # rows i != s, column j = s
  # Key side: row i, column j's logit moves by d; one logit of a softmax:
  # <g, p' - p> = p_ij (e^d - 1)(g_ij - G_i) / (1 + p_ij (e^d - 1)).
  d_ex = _softcap(cfg, jnp.einsum("BiKRH,BjKH->BKRij", q, kn))[0] - s0
  # (d capped at 60: e^60 p_ij saturates the row unless p_ij < 1e-26.)
  em1 = jnp.expm1(jnp.where(off, jnp.minimum(d_ex, 60.0), 0.0))
  # A row saturated on the patched key (p_ij = 1 in fp32, and the patch
  # removes it) has 1 + p (e^d - 1) = 0: the new row is decided by
  # probabilities that underflowed. The denominator is floored at 1e-6
  # there (an approximation, in those rows only).
  key_ex = jnp.where(off, p * em1 * (g - G) / jnp.maximum(1.0 + p * em1,
                                                         1e-6), 0.0)
  d_lin = ds * jnp.einsum("BiKRH,BjKH->BKRij", q, dk)
  key_lin = jnp.where(off, p * d_lin * (g - G), 0.0)
  # Query side: row s entirely (its query and its own key patched).
  raw_q = jnp.einsum("BiKRH,BjKH->BKRij", qn, k)
  own = jnp.einsum("BiKRH,BiKH->BKRi", qn, kn)
  eye = jnp.eye(T, dtype=bool)
  s_new = jnp.where(allowed, _softcap(cfg, jnp.where(eye, own[..., None],
                                                     raw_q))[0], c["scores"])
  row_ex = jnp.sum(g * (jax.nn.softmax(s_new, -1) - p), -1)  # [B,K,R,i]
  dq_raw = jnp.einsum("BiKRH,BjKH->BKRij", dq, k) + jnp.where(
      eye, jnp.einsum("BiKRH,BiKH->BKRi", q, dk)[..., None], 0.0)
  row_lin = jnp.sum(jnp.where(allowed, p * ds * dq_raw * (g - G), 0.0), -1)
  # Column sums over rows i give the key side at position j = s.
  corr = (jnp.sum(key_ex - key_lin, axis=3)
          + row_ex - row_lin)  # [B,K,R,s]
  return jnp.sum(corr, axis=(1, 2))


def _align(a, lens, W):
  """Padded rows (left-padded to W, token axis -2 or -3) -> token
  coordinates, rows b: a[..., b, W - n + t, ...] -> [..., b, t, ...]."""
  out = np.zeros_like(a)
  for b, n in enumerate(lens):
    out[:, b, :n] = a[:, b, W - n:]
  return out


def attribution_patching(lm, prompts, sources, source_answers=None,
                         target_answers=None, *, position_map=None,
                         grad_drop: bool = False, qk_fix: bool = False,
                         metric=transfer_metric,
                         answers=None, batch_size: int = 8) -> Attribution:
  """AtP estimates of patching each site at each position of `prompts`
  (targets) with its value in `sources` (one source prompt per target).

  Args:
    source_answers, target_answers: answer tokens (int / str per prompt or
      for all; a str means its first token), for the default metric.
    position_map: None (target token t takes the source's token t, none
      past the source's end), or per prompt an int array [T_i]: the source
      token index for each target token (-1: not patched).
    grad_drop, qk_fix: AtP*'s fixes (see the module doc; not together).
    metric: `metric(logits, hidden, answers) -> [B]` (see
      `transfer_metric`, the default); `answers`: for another metric, a
      tuple of arrays with a leading prompt axis N, handed to it by batch.
  """
  ids, src_ids = token_ids(lm, prompts), token_ids(lm, sources)
  if len(ids) != len(src_ids):
    raise ValueError(f"{len(ids)} targets but {len(src_ids)} sources")
  N, cfg = len(ids), lm.config
  if grad_drop and qk_fix:
    raise ValueError("grad_drop and qk_fix: choose one")
  if answers is None:
    answers = (answer_ids(lm, source_answers, N)[:, 0],
               answer_ids(lm, target_answers, N)[:, 0])
  lens = np.array([len(s) for s in ids])
  T, L = int(lens.max()), cfg.n_layers
  out = {"resid": np.zeros((L + 1, N, T), np.float32),
         "attn_out": np.zeros((L, N, T), np.float32),
         "mlp_out": np.zeros((L, N, T), np.float32),
         "head_out": np.zeros((L, N, T, cfg.n_heads), np.float32)}
  clean_metric = np.zeros(N, np.float32)
  grad_key = {"resid": "resid", "attn_out": "attn", "mlp_out": "mlp",
              "head_out": "head"}
  for b0 in range(0, N, batch_size):
    rows = list(range(b0, min(N, b0 + batch_size)))
    src = _source_acts(lm, [src_ids[i] for i in rows], [ids[i] for i in rows],
                       None if position_map is None else
                       [position_map[i] for i in rows])
    x, mask, blens = lm.pad_left([ids[i] for i in rows])
    W = x.shape[1]
    drops = list(range(L)) if grad_drop else [-1]
    for drop in drops:
      m, grads, acts = site_gradients(
          cfg, lm.params, jnp.asarray(x), jnp.asarray(mask),
          tuple(jnp.asarray(np.asarray(a)[rows]) for a in answers), metric,
          drop)
      if drop <= 0:
        clean_metric[rows] = np.asarray(m)
      for site, key in grad_key.items():
        g = _align(np.asarray(grads[key]), blens, W)
        a = _align(np.asarray(acts[site]), blens, W)
        delta = np.where(src[site + "_has"], src[site] - a, 0.0)
        if site == "head_out":
          est = np.einsum("LBTND,LBTD->LBTN", delta, g)
        else:
          est = np.einsum("LBTD,LBTD->LBT", delta, g)
        if site == "resid" and qk_fix:
          est = est + _qk_fix(lm, x, mask, src, acts, grads, blens)
        est = np.abs(est) / max(L - 1, 1) if grad_drop else est
        out[site][:, rows, :W] += est[:, :, :T]
  return Attribution(out["resid"], out["attn_out"], out["head_out"],
                     out["mlp_out"], clean_metric, lens, grad_drop)


def _qk_fix(lm, x, mask, src, acts, grads, lens):
  """The QK-fix corrections [L+1,B,W] of the residual estimates (token
  coordinates; row m feeds block m, the last row feeds no block)."""
  cfg = lm.config
  W = x.shape[1]
  q_pos, key_pos = positions_from_mask(jnp.asarray(mask))
  clean = np.asarray(acts["resid"])  # padded [L+1,B,W,D]
  new = clean.copy()
  for b, n in enumerate(lens):  # source values where there is a source
    has = src["resid_has"][0, b, :n]
    new[:, b, W - n:] = np.where(has, src["resid"][:, b, :n],
                                 clean[:, b, W - n:])
  out = np.zeros(clean.shape[:3], np.float32)
  for m in range(cfg.n_layers):
    out[m] = np.asarray(qk_correction(
        cfg, lm.params, jnp.int32(m), jnp.asarray(clean[m]),
        jnp.asarray(new[m]), q_pos, key_pos, grads["head"][m]))
  return _align(out, lens, W)


def _source_acts(lm, src_ids, tgt_ids, pmap):
  """Source activations at the target's token coordinates [.., B, W, ..]
  (W the longest target), plus "<site>_has" masks (broadcastable) of the
  positions that have a source."""
  acts = capture(lm, src_ids, layers="all",
                 sites=["attn_out", "mlp_out", "head_out"])
  W = max(len(s) for s in tgt_ids)
  B = len(tgt_ids)
  idx = np.full((B, W), -1)
  for b, (s, t) in enumerate(zip(src_ids, tgt_ids)):
    m = (np.arange(len(t)) if pmap is None else np.asarray(pmap[b]))
    m = np.where(m < len(s), m, -1)
    idx[b, :len(t)] = m
  has = idx >= 0
  take = lambda a: np.stack([a[:, b, np.maximum(idx[b], 0)]
                             for b in range(B)], 1)
  # resid: capture rows are layers -1..L-1, as Attribution.resid.
  out = {"resid": take(acts.resid), "attn_out": take(acts.attn_out[1:]),
         "mlp_out": take(acts.mlp_out[1:]),
         "head_out": take(acts.head_out[1:])}
  for k in list(out):
    shape = (1, B, W) + (1,) * (out[k].ndim - 3)
    out[k + "_has"] = has.reshape(shape)
  return out
