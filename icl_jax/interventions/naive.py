"""A naive one-cell-at-a-time patched generation: the engine's reference.

Deliberately simple and independent of the engine's machinery: for a single
prompt (no padding, no shared prefix, no clean-run reuse), run every block
in a Python loop over the full prompt, apply the edit to block `layer`'s
output, finish the forward, then decode greedily by re-running the *whole*
sequence each step (no KV cache), applying the edit again on every step to
the prompt positions (what the patched K/V cache means), and, with
`first_token` timing, only on the first step (the study's D2).
"""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp

from icl_jax.interventions.spec import apply_edit
from icl_jax.models.decoder import Block, Decoder, rope_tables
from icl_jax.models.generation import StopTables, step_done


def _forward_with_edit(lm, ids, layer, edit, edit_decode):
  """Full forward of ids [T]; returns (last-position logits [V], delta)."""
  cfg, params = lm.config, lm.params
  dt = lm.dtype
  model = Decoder(cfg, dt)
  tokens = jnp.asarray(ids, jnp.int32)[None]
  T = tokens.shape[1]
  pos = jnp.arange(T)[None]
  rope = rope_tables(cfg, pos)
  x = model.apply({"params": params}, tokens,
                  method=lambda m, t: m.embed_tokens(t))
  delta = 0.0
  block = Block(cfg, dt)
  stacked = params["layers"]["block"]

  def edited(out, inp):
    nonlocal delta
    if edit is None:
      return out
    mask, values, a, c, sigma, rel, noise = edit
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
    y, d = apply_edit(out[0], inp[0], jnp.asarray(m), jnp.asarray(v), a, c,
                      sigma, rel, jnp.asarray(nz))
    delta = max(delta, float(d))
    return y[None]

  if layer == -1:
    x = edited(x, x)
  for l in range(cfg.n_layers):
    p = jax.tree_util.tree_map(lambda a: a[l], stacked)
    x_in = x
    x, _ = block.apply({"params": p}, x, jnp.asarray(cfg.is_sliding[l]),
                       None, rope, pos, pos, None)
    if l == layer:
      x = edited(x, x_in)
  logits = model.apply({"params": params}, x[:, -1:],
                       method=lambda m, h: m.unembed(m.final_norm(h)))
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
