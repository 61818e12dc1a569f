"""A naive one-cell-at-a-time patched generation: the engine's reference.

Deliberately simple and independent of the engine's machinery: for a single
prompt (no padding, no shared prefix, no clean-run reuse, no KV cache), run
the blocks up to block `layer` over the full prompt (the model's one block
loop, `models.decoder.run_blocks`), apply the edit to block `layer`'s output
in plain Python, finish the forward, then decode greedily by re-running the
*whole* sequence each step, applying the edit again on every step to the
prompt positions (what the patched K/V cache means), and, with `first_token`
timing, only on the first step (the study's D2).

Component sites (attention output, per-head outputs, MLP output):
`naive_component_logits` writes block `layer` out op by op in float64
numpy (`naive_block`, one head at a time, not the model's Block and not
the engine's site edits) and edits the component there.
"""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp

from icl_jax.interventions.spec import apply_edit
from icl_jax.models.decoder import embed, final_logits, run_blocks
from icl_jax.models.generation import StopTables, step_done


def _blocks(cfg, params, x, start, stop):
  """Blocks [start, stop) on one full sequence x [1,T,D], no cache; run op
  by op (jit disabled: the loop runs in Python), like the rest of this
  reference."""
  pos = jnp.arange(x.shape[1])[None]
  with jax.disable_jit():
    return run_blocks(cfg, params, x, pos, pos, start=start, stop=stop)[0]


def _edit_arrays(cfg, T, edit, edit_decode):
  """The edit's mask / values / noise over all T tokens (prompt + generated)."""
  mask, values, _, _, _, _, noise = edit
  Tp = mask.shape[0]
  m = np.zeros(T, bool)
  m[:min(T, Tp)] = mask[:T]
  v = np.zeros((T, cfg.d_model), np.float32)
  v[:min(T, Tp)] = values[:T]
  nz = np.zeros((T, cfg.d_model), np.float32)
  nz[:min(T, Tp)] = noise[:T]
  if edit_decode is not None and T > Tp:  # generated tokens (every_step)
    m[Tp:] = True
    v[Tp:] = edit_decode[0]
    nz[Tp:] = edit_decode[1][:T - Tp]
  return jnp.asarray(m), jnp.asarray(v), jnp.asarray(nz)


def _forward_with_edit(lm, ids, layer, edit, edit_decode):
  """Full forward of ids [T]; returns (last-position logits [V], delta)."""
  cfg, params = lm.config, lm.params
  x = embed(cfg, params, jnp.asarray(ids, jnp.int32)[None])
  x_in = x  # input of block `layer` (the embeddings for layer -1)
  if layer >= 0:
    x_in = _blocks(cfg, params, x, 0, layer)
    x = _blocks(cfg, params, x_in, layer, layer + 1)
  delta = 0.0
  if edit is not None:
    m, v, nz = _edit_arrays(cfg, len(ids), edit, edit_decode)
    _, _, a, c, sigma, rel, _ = edit
    y, d = apply_edit(x[0], x_in[0], m, v, a, c, sigma, rel, nz)
    x, delta = y[None], float(d)
  x = _blocks(cfg, params, x, layer + 1, cfg.n_layers)
  logits = final_logits(cfg, params, x[:, -1:])
  return np.asarray(logits[0, 0]), delta


def naive_patched_generate(lm, ids, layer, mask, values, a=0.0, c=0.0,
                           sigma=0.0, relative=False, noise=None,
                           max_new_tokens=8, stop="line", timing="prefill",
                           decode_values=None, decode_noise=None,
                           tables: StopTables | None = None):
  """Generated token ids for one prompt under one edit (see module doc)."""
  ids = list(map(int, ids))
  T = len(ids)
  D = lm.config.d_model
  mask = np.asarray(mask, bool)[:T]
  values = np.asarray(values, np.float32)[:T]
  noise = (np.zeros((T, D), np.float32) if noise is None
           else np.asarray(noise, np.float32)[:T])
  edit = (mask, values, a, c, sigma, relative, noise)
  tables = (tables or lm.stop_tables).as_arrays()
  seq = list(ids)
  out = []
  seen = jnp.zeros((1,), bool)
  delta = 0.0
  for t in range(max_new_tokens):
    use_edit = edit if (timing != "first_token" or t == 0) else None
    dec = None
    if timing == "every_step" and t > 0:
      dec = (np.asarray(decode_values, np.float32),
             np.asarray(decode_noise, np.float32))
    logits, d = _forward_with_edit(lm, seq, layer, use_edit, dec)
    if t == 0:
      delta = d
    tok = int(np.argmax(logits))
    out.append(tok)
    stop_now, seen = step_done(jnp.asarray([tok]), seen, tables, stop)
    if bool(stop_now[0]):
      break
    seq.append(tok)
  return out, delta


# -- component sites: block `layer` written out op by op (float64 numpy) ----

def _rms(x, w, cfg):
  """RMSNorm over the last axis (Gemma: (1 + w))."""
  y = x / np.sqrt(np.mean(x * x, -1, keepdims=True) + cfg.norm_eps)
  return y * ((1.0 + w) if cfg.norm_offset else w)


def _rope(x, pos, rope, head_dim):
  """x [T,n,H] rotated (rotate-half) at integer positions pos [T]."""
  from icl_jax.models.config import rope_inv_freq

  f = pos[:, None] * np.asarray(rope_inv_freq(rope, head_dim), np.float64)
  cos, sin = np.cos(np.concatenate([f, f], -1)), np.sin(
      np.concatenate([f, f], -1))
  h = head_dim // 2
  rot = np.concatenate([-x[..., h:], x[..., :h]], -1)
  return x * cos[:, None] + rot * sin[:, None]


def naive_block(cfg, p, layer, x, comp_edit=None):
  """Block `layer` on one sequence x [T,D] (float64; p: its parameters as
  numpy). Head n's output z_n W_O[n] is formed one head at a time;
  comp_edit(site, value) -> value edits "head_out" (value: the list of the
  N head outputs [T,D]), "attn_out" / "mlp_out" ([T,D], after post-norms)."""
  comp_edit = comp_edit or (lambda site, v: v)
  T = x.shape[0]
  pa = p["attn"]
  h = _rms(x, p["attn_norm"]["scale"], cfg)
  sliding = cfg.is_sliding[layer]
  rope = cfg.rope_local if (sliding and cfg.rope_local) else cfg.rope_global
  pos = np.arange(T, dtype=np.float64)
  heads = []
  for n in range(cfg.n_heads):
    kv = n // (cfg.n_heads // cfg.n_kv_heads)
    q, k, v = h @ pa["q"][:, n], h @ pa["k"][:, kv], h @ pa["v"][:, kv]
    if cfg.qkv_bias:
      q, k, v = (q + pa["q_bias"][n], k + pa["k_bias"][kv],
                 v + pa["v_bias"][kv])
    if cfg.qk_norm:
      q = _rms(q, pa["q_norm"]["scale"], cfg)
      k = _rms(k, pa["k_norm"]["scale"], cfg)
    q = _rope(q[:, None], pos, rope, cfg.head_dim)[:, 0]
    k = _rope(k[:, None], pos, rope, cfg.head_dim)[:, 0]
    s = (q @ k.T) * cfg.attn_scale
    if cfg.attn_logit_softcap is not None:
      s = np.tanh(s / cfg.attn_logit_softcap) * cfg.attn_logit_softcap
    i, j = np.arange(T)[:, None], np.arange(T)[None]
    ok = j <= i
    if sliding and cfg.sliding_window is not None:
      ok &= (i - j) < cfg.sliding_window
    s = np.where(ok, s, -np.inf)
    w = np.exp(s - s.max(-1, keepdims=True))
    heads.append((w / w.sum(-1, keepdims=True)) @ v @ pa["o"][n])
  a = sum(comp_edit("head_out", heads))
  if cfg.post_norms:
    a = _rms(a, p["post_attn_norm"]["scale"], cfg)
  x = x + comp_edit("attn_out", a)
  h = _rms(x, p["mlp_norm"]["scale"], cfg)
  pm = p["mlp"]
  g = h @ pm["gate"]
  if cfg.activation == "silu":
    act = g / (1.0 + np.exp(-g))
  else:  # gelu, tanh approximation
    act = 0.5 * g * (1 + np.tanh(np.sqrt(2 / np.pi) * (g + 0.044715 * g**3)))
  m = (act * (h @ pm["up"])) @ pm["down"]
  if cfg.post_norms:
    m = _rms(m, p["post_mlp_norm"]["scale"], cfg)
  return x + comp_edit("mlp_out", m)


def naive_component_logits(lm, ids, layer, site, mask, values, a=0.0,
                           heads=None):
  """First generated position's logits [V] of one prompt with a component
  of block `layer` edited (no noise): out[t] := a * out[t] + values[t] at
  masked t, where out is the attention / MLP output, or (site head_out) the
  sum of the heads `heads` (int list); the other heads are left as they
  are. Blocks other than `layer` run through the model's block loop;
  block `layer` is `naive_block`."""
  from icl_jax.models.blocks import layer_params

  cfg, params = lm.config, lm.params
  T = len(ids)
  m = np.asarray(mask, bool)[:T, None]
  vals = np.asarray(values, np.float64)[:T]
  x = embed(cfg, params, jnp.asarray(ids, jnp.int32)[None])
  x = np.asarray(_blocks(cfg, params, x, 0, layer)[0], np.float64)
  p = jax.tree_util.tree_map(lambda w: np.asarray(w, np.float64),
                             layer_params(params["layers"]["block"], layer))

  def comp_edit(name, v):
    if name != site:
      return v
    if name != "head_out":
      return np.where(m, a * v + vals, v)
    sel = sum(v[n] for n in heads)
    new = np.where(m, a * sel + vals, sel)
    out = list(v)
    out[heads[0]] = v[heads[0]] + (new - sel)  # the group's sum moves
    return out

  y = naive_block(cfg, p, layer, x, comp_edit)
  y = jnp.asarray(y, jnp.float32)[None]
  y = _blocks(cfg, params, y, layer + 1, cfg.n_layers)
  return np.asarray(final_logits(cfg, params, y[:, -1:])[0, 0])


def naive_first_logits(lm, ids, layer, mask, values, a=0.0, c=0.0,
                       sigma=0.0, relative=False, noise=None):
  """First generated position's logits [V] of one prompt under one edit
  (the reference for the engine's first_logits; arguments as above)."""
  T, D = len(ids), lm.config.d_model
  noise = (np.zeros((T, D), np.float32) if noise is None
           else np.asarray(noise, np.float32)[:T])
  edit = (np.asarray(mask, bool)[:T], np.asarray(values, np.float32)[:T], a,
          c, sigma, relative, noise)
  return _forward_with_edit(lm, list(map(int, ids)), layer, edit, None)[0]


def naive_head_group_logits(lm, ids, groups, mask, values):
  """First generated position's logits [V] of one prompt with heads of
  several blocks replaced together (`HeadGroupPatch`'s reference): every
  block is `naive_block` (float64); at block l in `groups` ({l: heads}),
  the sum of heads groups[l] is set to values[l] [T,D] at masked t (the
  other heads unchanged), and later blocks read the edited residual."""
  from icl_jax.models.blocks import layer_params

  cfg, params = lm.config, lm.params
  T = len(ids)
  m = np.asarray(mask, bool)[:T, None]
  x = np.asarray(embed(cfg, params, jnp.asarray(ids, jnp.int32)[None])[0],
                 np.float64)
  for layer in range(cfg.n_layers):
    p = jax.tree_util.tree_map(lambda w: np.asarray(w, np.float64),
                               layer_params(params["layers"]["block"], layer))
    hs = list(groups.get(layer, ()))

    def comp_edit(name, v, hs=hs, layer=layer):
      if name != "head_out" or not hs:
        return v
      sel = sum(v[n] for n in hs)
      out = list(v)
      new = np.where(m, np.asarray(values[layer], np.float64)[:T], sel)
      out[hs[0]] = v[hs[0]] + (new - sel)
      return out

    x = naive_block(cfg, p, layer, x, comp_edit)
  y = jnp.asarray(x, jnp.float32)[None]
  return np.asarray(final_logits(cfg, params, y[:, -1:])[0, 0])
