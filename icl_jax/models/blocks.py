"""The one loop over transformer blocks, shared by every model in icl_jax.

`block_loop` runs blocks [start, stop) of parameters stacked on a leading
layer axis; `start`/`stop` may be traced scalars (a `fori_loop` with dynamic
bounds), so one compiled program serves every layer. With `unroll` (Python
int bounds) the same loop body is traced once per block instead, and the
parameters may be a list of per-block trees. The decoder
(`models.decoder.run_blocks`: forward, intervention engine, naive reference,
knockout and skip edits) and the synthetic GPT-2 regressor
(`synthetic.model`) both run their blocks through it.

Layer numbering is by block everywhere: layer l is the output of block l
(residual index l + 1); -1 is the embedding output.
"""

from __future__ import annotations

from typing import Any, Callable

import jax


def layer_params(stacked, l):
  """Block l's parameters from a tree stacked on a leading layer axis
  (l may be traced), or from a list of per-block trees (l an int)."""
  if isinstance(stacked, (list, tuple)):
    return stacked[l]
  return jax.tree_util.tree_map(
      lambda a: jax.lax.dynamic_index_in_dim(a, l, 0, keepdims=False),
      stacked)


def block_loop(apply_block: Callable, stacked, x, start, stop, *,
               state: Any = None, edit: Callable | None = None,
               records: dict | None = None, unroll: bool = False):
  """Runs blocks [start, stop) on x (the input of block `start`).

  Args:
    apply_block: `(params, l, x, state) -> (y, state, extras)`: block l with
      its parameters (sliced from `stacked`) on input x; `state` is carried
      (e.g. a K/V cache), `extras` a dict of per-block arrays or None.
    stacked: parameter tree with a leading layer axis (or, with `unroll`, a
      list of per-block trees).
    start, stop: int or traced int scalars (ints with `unroll`).
    edit: `(l, x_in, y) -> y`, applied to each block's output (None: none).
    records: None, or {name: buffer [n_blocks, ...]}: "resid" receives each
      block's (edited) output, any other name `extras[name]`, at row l.
    unroll: a Python loop over the blocks (l a Python int; XLA sees each
      block separately, as in a model written block by block) instead of a
      `fori_loop`.
  Returns:
    (x, state, records).
  """

  def body(l, carry):
    x, state, rec = carry
    y, state, extras = apply_block(layer_params(stacked, l), l, x, state)
    if edit is not None:
      y = edit(l, x, y)
    if rec is not None:
      vals = dict(extras or {}, resid=y)
      rec = {k: jax.lax.dynamic_update_index_in_dim(
          buf, vals[k].astype(buf.dtype), l, 0) for k, buf in rec.items()}
    return y, state, rec

  if unroll:
    carry = (x, state, records)
    for l in range(start, stop):
      carry = body(l, carry)
    return carry
  return jax.lax.fori_loop(start, stop, body, (x, state, records))
