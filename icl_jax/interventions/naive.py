"""A naive one-cell-at-a-time patched generation: the engine's reference.

Deliberately simple and independent of the engine's machinery: for a single
prompt (no padding, no shared prefix, no clean-run reuse, no KV cache), run
the blocks up to block `layer` over the full prompt (the model's one block
loop, `models.decoder.run_blocks`), apply the edit to block `layer`'s output
in plain Python, finish the forward, then decode greedily by re-running the
*whole* sequence each step, applying the edit again on every step to the
prompt positions (what the patched K/V cache means), and, with `first_token`
timing, only on the first step (the study's D2).
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
