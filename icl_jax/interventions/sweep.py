"""The engine's device programs: a target set's clean run and one layer's
sweep of cells (see `engine` for what is computed once and what is reused).

`sweep_layer` runs in three phases, each a function here: the shared prefix
once per cell (`prefix_phase`), each prompt's query tokens per (cell,
prompt) (`query_phase`), then greedy decoding of every (cell, prompt) row
together (`decode_phase`). All blocks run through `models.decoder.run_blocks`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from icl_jax.interventions.decode import greedy_decode
from icl_jax.interventions.spec import SITES, apply_edit
from icl_jax.models.config import DecoderConfig
from icl_jax.models.decoder import (Decoder, collect_residuals, embed,
                                    final_logits, params_dtype, run_blocks)

@functools.partial(jax.jit, static_argnames=("cfg",))
def clean_run(cfg: DecoderConfig, params, prefix_ids, q_ids, q_len):
  """Clean residuals and K/V of a target set.

  Args:
    prefix_ids: int [P] shared prefix; q_ids: int [N,Q] right-padded queries;
    q_len: int [N].
  Returns dict: prefix_resid [L+1,P,D], prefix_k/v [L,P,K,H],
    query_resid [L+1,N,Q,D], query_k/v [L,N,Q,K,H], first_logits [N,V].
  """
  dt = params_dtype(params)
  L, K, H = cfg.n_layers, cfg.n_kv_heads, cfg.head_dim
  P = prefix_ids.shape[0]
  N, Q = q_ids.shape
  model = Decoder(cfg, dt)
  out = {}
  if P > 0:
    pos = jnp.arange(P)[None]
    cache = {n: jnp.zeros((L, 1, P, K, H), dt) for n in ("k", "v")}
    (_, cache), inter = model.apply(
        {"params": params}, prefix_ids[None], pos, pos, cache=cache,
        slots=pos, compute_logits=False, mutable=["intermediates"])
    out["prefix_resid"] = collect_residuals(inter["intermediates"])[:, 0]
    out["prefix_k"], out["prefix_v"] = cache["k"][:, 0], cache["v"][:, 0]
  else:
    out["prefix_resid"] = jnp.zeros((L + 1, 0, cfg.d_model), dt)
    out["prefix_k"] = out["prefix_v"] = jnp.zeros((L, 0, K, H), dt)
  q_pos = jnp.broadcast_to(P + jnp.arange(Q), (N, Q))
  q_keys = jnp.where(jnp.arange(Q)[None] < q_len[:, None], q_pos, -1)
  key_pos = jnp.concatenate(
      [jnp.broadcast_to(jnp.arange(P), (N, P)), q_keys], axis=1)
  cache = {n: jnp.concatenate(
      [jnp.broadcast_to(out[f"prefix_{n}"][:, None], (L, N, P, K, H)),
       jnp.zeros((L, N, Q, K, H), dt)], axis=2) for n in ("k", "v")}
  (_, cache), inter = model.apply(
      {"params": params}, q_ids, q_pos, key_pos, cache=cache, slots=q_pos,
      compute_logits=False, mutable=["intermediates"])
  res = collect_residuals(inter["intermediates"])  # [L+1,N,Q,D]
  out["query_resid"] = res
  out["query_k"], out["query_v"] = cache["k"][:, :, P:], cache["v"][:, :, P:]
  last = res[-1][jnp.arange(N), q_len - 1]  # [N,D]
  out["first_logits"] = final_logits(cfg, params, last[:, None])[:, 0]
  return out


def _noise(seed, shape):
  return jax.random.normal(jax.random.PRNGKey(seed), shape, jnp.float32)


def site_edits(site: int, heads, mask, values, a, c, sigma, rel, noise):
  """`run_blocks` component edits of one block for B rows (`spec` SITES):
  heads bool [B,N]; mask [B,T]; values, noise [B,T,D]; a, c, sigma, rel [B].
  Returns the dict for `Block`'s site_edit."""
  edit = jax.vmap(apply_edit)
  name = SITES[site]
  if name in ("attn_out", "mlp_out"):
    return {name: lambda v: edit(v, v, mask, values, a, c, sigma, rel,
                                 noise)[0]}

  def head_edit(z, wo, out):
    # The selected heads' summed output [B,T,D] in fp32 (as `capture`).
    sel = jnp.einsum("BTNH,BN,NHD->BTD", z, heads.astype(z.dtype), wo,
                     preferred_element_type=jnp.float32)
    new, _ = edit(sel, sel, mask, values, a, c, sigma, rel, noise)
    # Unmasked positions: new - sel == 0 exactly, so out is unchanged.
    return (out.astype(jnp.float32) + (new - sel)).astype(out.dtype)

  return {"head_out": head_edit}


def edited_output(cfg, params, site, layer, x_in, clean_out, edit_args,
                  run_kwargs):
  """Block `layer`'s edited output for one row: (y [1,T,D], cache, max
  |edit|). Residual site: the edit of the clean output `clean_out` [T,D]
  (x_in [T,D] its input). Component sites: block `layer` re-run from x_in
  with the edit inside it (the max is then the change of its output).
  edit_args = (heads [N], mask [T], values [T,D], a, c, sigma, rel,
  noise [T,D]); run_kwargs: q_pos, key_pos, cache, slots of `run_blocks`."""
  heads, mask, values, a, c, sigma, rel, nz = edit_args
  if site == 0:
    y, delta = apply_edit(clean_out, x_in, mask, values, a, c, sigma, rel, nz)
    return y[None], run_kwargs["cache"], delta
  row = lambda v: jnp.asarray(v)[None]
  edits = site_edits(site, *map(row, edit_args))
  y, cache = run_blocks(cfg, params, x_in[None], start=layer, stop=layer + 1,
                        site_edit=lambda l: edits, **run_kwargs)
  delta = jnp.max(jnp.abs(y[0].astype(jnp.float32)
                          - clean_out.astype(jnp.float32)), initial=0.0)
  return y, cache, delta


def _cell_args(cells, noise):
  """The per-cell edit arrays, in `edited_output`'s edit_args order (mask
  [C,T], noise [C,T,D]; per-target cells: [C,N,T] and [C,N,T,D])."""
  mask = cells.get("target_mask", cells["mask"])
  return (cells["heads"], mask, cells["values"], cells["a"],
          cells["c"], cells["sigma"], cells["relative"], noise)


# vmap axes of `_cell_args` over the N targets of per-target cells: each
# target its own mask and noise, the rest shared.
_TARGET_AXES = (None, 0, None, None, None, None, None, 0)


def prefix_phase(cfg, params, layer, clean, cells, noise, prefix_start,
                 site=0):
  """Per cell: the edited prefix's K/V [C,L,P,K,H] and max |edit| [C];
  per-target cells that edit the prefix: per (cell, target), [C,N,L,P,K,H]
  and [C,N]."""
  L, K, H = cfg.n_layers, cfg.n_kv_heads, cfg.head_dim
  P = clean["prefix_resid"].shape[1]
  C = cells["mask"].shape[0]
  start, inp_idx = layer + 1, jnp.maximum(layer, 0)
  p0 = prefix_start

  def prefix_cell(heads, mask, values, a, c, sigma, rel, nz):
    out = jax.lax.dynamic_index_in_dim(clean["prefix_resid"], start, 0, False)
    inp = jax.lax.dynamic_index_in_dim(clean["prefix_resid"], inp_idx, 0,
                                       False)
    # Tokens before `prefix_start` (no cell of the chunk edits them) keep
    # their clean K/V at every layer (causal attention): only [p0, P) runs.
    cache = {n: clean[f"prefix_{n}"][:, None] for n in ("k", "v")}
    keys = jnp.arange(P)[None]
    pos = keys[:, p0:]
    kw = dict(q_pos=pos, key_pos=keys, cache=cache, slots=pos)
    x, kw["cache"], delta = edited_output(
        cfg, params, site, layer, inp[p0:], out[p0:],
        (heads, mask[p0:P], values[p0:P], a, c, sigma, rel, nz[p0:P]), kw)
    _, cache = run_blocks(cfg, params, x, start=start, stop=L, **kw)
    return {n: cache[n][:, 0] for n in ("k", "v")}, delta

  if P > prefix_start:
    if "target_mask" in cells:
      per_target = jax.vmap(prefix_cell, in_axes=_TARGET_AXES)
      return jax.vmap(per_target)(*_cell_args(cells, noise))
    return jax.vmap(prefix_cell)(*_cell_args(cells, noise))
  # No prefix token edited (or no prefix): the clean prefix K/V.
  pcache = {n: jnp.broadcast_to(clean[f"prefix_{n}"], (C, L, P, K, H))
            for n in ("k", "v")}
  return pcache, jnp.zeros((C,), jnp.float32)


def query_phase(cfg, params, layer, clean, q_len, cells, noise, pcache,
                max_new_tokens, timing, site=0):
  """Per (cell, prompt): the query tokens against that cell's prefix K/V.

  Returns (cache {"k","v": [C,N,L,S,K,H]}, key_pos [C,N,S],
  first logits [C,N,V], max |edit| [C,N]).
  """
  dt = params_dtype(params)
  L, K, H = cfg.n_layers, cfg.n_kv_heads, cfg.head_dim
  P = clean["prefix_resid"].shape[1]
  Q = clean["query_resid"].shape[2]
  start, inp_idx = layer + 1, jnp.maximum(layer, 0)
  q_pos = P + jnp.arange(Q)
  dec_pad = jnp.full((max_new_tokens,), -1, jnp.int32)

  def query_row(pk, pv, heads, mask, values, a, c, sigma, rel, nz, qres, qk,
                qv, ql):
    out = jax.lax.dynamic_index_in_dim(qres, start, 0, False)  # [Q,D]
    inp = jax.lax.dynamic_index_in_dim(qres, inp_idx, 0, False)
    zeros = jnp.zeros((L, max_new_tokens, K, H), dt)
    patched = {"k": jnp.concatenate([pk, qk, zeros], 1)[:, None],
               "v": jnp.concatenate([pv, qv, zeros], 1)[:, None]}
    key_pos = jnp.concatenate(
        [jnp.arange(P), jnp.where(jnp.arange(Q) < ql, q_pos, -1),
         dec_pad])[None]
    kw = dict(q_pos=q_pos[None], key_pos=key_pos, cache=patched,
              slots=q_pos[None])
    x, kw["cache"], delta = edited_output(
        cfg, params, site, layer, inp, out,
        (heads, mask[P:], values[P:], a, c, sigma, rel, nz[P:]), kw)
    x, patched = run_blocks(cfg, params, x, start=start, stop=L, **kw)
    logits = final_logits(cfg, params, x[:, ql - 1][:, None])[0, 0]  # [V]
    if timing == "first_token":
      # D2: later tokens come from the clean prompt (no patch in the cache).
      cache = {"k": jnp.concatenate([clean["prefix_k"], qk, zeros], 1),
               "v": jnp.concatenate([clean["prefix_v"], qv, zeros], 1)}
    else:
      cache = {n: patched[n][:, 0] for n in ("k", "v")}
    return cache, key_pos[0], logits, delta

  # Per-target cells: each prompt its own mask and noise (and its own
  # prefix K/V if the prefix was edited, pcache [C,N,L,P,K,H]).
  tm = _TARGET_AXES if "target_mask" in cells else (None,) * 8
  pp = 0 if pcache["k"].ndim == 6 else None
  per_prompt = jax.vmap(query_row, in_axes=(pp, pp) + tm + (1, 1, 1, 0))
  per_cell = jax.vmap(per_prompt, in_axes=(0,) * 10 + (None,) * 4)
  return per_cell(
      pcache["k"], pcache["v"], *_cell_args(cells, noise),
      clean["query_resid"], clean["query_k"], clean["query_v"], q_len)


def decode_phase(cfg, params, layer, cells, first_logits, cache, key_pos,
                 row_len, gen_slot, tables, max_new_tokens, stop_rule, timing,
                 compact_min_rows, site=0):
  """Greedy decoding of all R = C*N rows (row r = cell r // N); with
  `every_step` timing each generated token is edited at `layer` too.
  Returns (tokens [R,M], n_gen [R])."""
  L, D = cfg.n_layers, cfg.d_model
  N = first_logits.shape[0] // cells["mask"].shape[0]
  start, inp_idx = layer + 1, jnp.maximum(layer, 0)
  rep = lambda v: jnp.repeat(v, N, axis=0)  # per-cell -> per-row
  r_a, r_c, r_sig, r_rel = (rep(cells[k]) for k in ("a", "c", "sigma",
                                                     "relative"))
  r_dv = rep(cells["decode_values"])
  r_seed = (cells["target_seed"].reshape(-1) if "target_seed" in cells
            else rep(cells["seed"]))
  r_heads = rep(cells["heads"])

  def step_layers(tok, pos, slot, key_pos, cache, t, rows):
    x = embed(cfg, params, tok[:, None])  # [R',1,D]
    qp = pos[:, None]
    sl = jnp.broadcast_to(slot, (tok.shape[0], 1))
    run = functools.partial(run_blocks, cfg, params, q_pos=qp,
                            key_pos=key_pos, slots=sl)
    if timing != "every_step":
      return run(x, start=0, stop=L, cache=cache)
    x_in, cache = run(x, start=0, stop=inp_idx, cache=cache)
    nz = jax.vmap(lambda s: _noise(s + 7919 * (t + 1), (1, D)))(r_seed[rows])
    args = (jnp.ones((tok.shape[0], 1), bool), r_dv[rows][:, None],
            r_a[rows], r_c[rows], r_sig[rows], r_rel[rows], nz)
    if site == 0:
      x_out, cache = run(x_in, start=inp_idx, stop=start, cache=cache)
      x_out, _ = jax.vmap(apply_edit)(x_out, x_in, *args)
    else:  # the edit inside block `layer` (layer >= 0 for components)
      edits = site_edits(site, r_heads[rows], *args)
      x_out, cache = run(x_in, start=layer, stop=start, cache=cache,
                         site_edit=lambda l: edits)
    return run(x_out, start=start, stop=L, cache=cache)

  return greedy_decode(cfg, params, first_logits, cache, key_pos, row_len,
                       gen_slot, max_new_tokens, tables, stop_rule,
                       step_layers, compact_min_rows)


@functools.partial(jax.jit, static_argnames=(
    "cfg", "max_new_tokens", "stop_rule", "timing", "want_logits",
    "compact_min_rows", "prefix_start", "site"))
def sweep_layer(cfg: DecoderConfig, params, layer, clean, q_len, cells,
                tables, max_new_tokens: int, stop_rule: str, timing: str,
                want_logits: bool = False, compact_min_rows: int = 0,
                prefix_start: int = 0, site: int = 0):
  """All cells of one layer over all target prompts, decoded greedily.

  Args:
    layer: int scalar (traced), block whose output is edited (-1: embeddings).
    clean: output of `clean_run` (without first_logits).
    q_len: int [N].
    cells: dict of CellBatch arrays with leading axis C (layer and site
      excluded; target_mask / target_seed only for per-target cells).
    tables: StopTables.as_arrays().
    compact_min_rows: decode compaction (`greedy_loop`); 0 = off.
    prefix_start: static; no cell edits a prefix slot before it, so those
      tokens keep their clean K/V and the prefix phase runs [prefix_start, P)
      only (`Engine.run` passes the chunk's first edited slot, rounded down).
    site: static index into `spec.SITES` shared by the chunk's cells (0:
      the residual; else a component of block `layer`, which is re-run).
  Returns dict: tokens [C,N,max_new], n_gen [C,N], delta [C] (max |edit|),
    first_logits [C,N,V] (if want_logits).
  """
  L, K, H, D = cfg.n_layers, cfg.n_kv_heads, cfg.head_dim, cfg.d_model
  P = clean["prefix_resid"].shape[1]
  _, N, Q, _ = clean["query_resid"].shape
  T = P + Q
  S = T + max_new_tokens
  C = cells["mask"].shape[0]
  draw = jax.vmap(lambda s: _noise(s, (T, D)))
  if "target_seed" in cells:  # per (cell, target) draws [C,N,T,D]
    noise = jax.vmap(draw)(cells["target_seed"])
  else:
    noise = draw(cells["seed"])  # [C,T,D]
  pcache, pdelta = prefix_phase(cfg, params, layer, clean, cells, noise,
                                prefix_start, site)
  cache, key_pos, logits, qdelta = query_phase(
      cfg, params, layer, clean, q_len, cells, noise, pcache, max_new_tokens,
      timing, site)
  # cache [C,N,L,S,K,H] -> rows R = C*N: [L,R,S,K,H]
  R = C * N
  cache = {n: jnp.moveaxis(cache[n].reshape(R, L, S, K, H), 0, 1)
           for n in ("k", "v")}
  # pdelta [C] or (per-target prefix) [C,N]
  delta = jnp.maximum(pdelta.reshape(C, -1).max(axis=1), qdelta.max(axis=1))
  tokens, n_gen = decode_phase(
      cfg, params, layer, cells, logits.reshape(R, -1), cache,
      key_pos.reshape(R, S), jnp.tile(P + q_len, C), T, tables,
      max_new_tokens, stop_rule, timing, compact_min_rows, site)
  result = {"tokens": tokens.reshape(C, N, max_new_tokens),
            "n_gen": n_gen.reshape(C, N), "delta": delta}
  if want_logits:
    result["first_logits"] = logits
  return result
