"""Greedy decoding with per-step block callbacks (engine and blockwise)."""

from __future__ import annotations

from icl_jax.models.config import DecoderConfig
from icl_jax.models.decoder import final_logits
from icl_jax.models.generation import greedy_loop, take_cache_rows


def greedy_decode(cfg: DecoderConfig, params, first_logits, cache, key_pos,
                  row_len, gen_slot, max_new_tokens: int, tables, stop_rule,
                  step_layers, compact_min_rows: int = 0):
  """Greedy decoding of R rows until every row stops or max_new_tokens.

  Token t is written at slot `gen_slot + t` (position `row_len + t`);
  `step_layers(tok [R'], pos [R'], slot, key_pos, cache, t, rows [R']) ->
  (x [R',1,D], cache)` runs the blocks on it for the rows `rows` (indices
  into the R rows; fewer once finished rows are compacted away, see
  `greedy_loop`; the forward after the last token is never run). Returns
  (tokens [R,M] (0 after a row stopped), n_gen [R]).
  """

  def forward(tok, t, carry, rows):
    cache, key_pos = carry
    pos = row_len[rows] + t
    key_pos = key_pos.at[:, gen_slot + t].set(pos)
    x, cache = step_layers(tok, pos, gen_slot + t, key_pos, cache, t, rows)
    return final_logits(cfg, params, x)[:, 0], (cache, key_pos)

  tokens, n_gen, _ = greedy_loop(first_logits, max_new_tokens, tables,
                                 stop_rule, forward, (cache, key_pos),
                                 take_rows=take_cache_rows,
                                 compact_min_rows=compact_min_rows)
  return tokens, n_gen
