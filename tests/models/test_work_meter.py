"""icl_jax.models.work_meter: counts, seconds net of compiling, nesting, and the
model calls it meters."""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from icl_jax.models import work_meter
from icl_jax.interventions.engine import Engine
from icl_jax.interventions.spec import make_cells
from tests.interventions.test_engine_exact import tiny_lm


def test_counts_and_compile_seconds_apart():
  f = jax.jit(lambda x: jnp.tanh(x) @ x.T + 0.25)  # a new program
  x = jnp.ones((512, 512), jnp.float32)  # ~0.3 GFLOP: a few ms
  work_meter.reset()
  with work_meter.metered("forward", 3):
    jax.block_until_ready(f(x))
  first = work_meter.totals()["forward"]
  assert first["count"] == 3 and first["compile_s"] > 0
  assert first["seconds"] >= 0
  with work_meter.metered("forward", 2):  # compiled: no compile events
    jax.block_until_ready(f(x))
  both = work_meter.totals()["forward"]
  assert both["count"] == 5 and both["compile_s"] == first["compile_s"]
  assert both["seconds"] > first["seconds"]
  work_meter.reset()
  assert work_meter.totals() == {}


def test_nested_calls_count_in_the_outer_one():
  work_meter.reset()
  with work_meter.metered("engine", 4):
    with work_meter.metered("forward", 2):
      pass
  assert set(work_meter.totals()) == {"engine"}
  assert work_meter.totals()["engine"]["count"] == 4


def test_a_failed_call_is_not_counted_and_bad_kinds_fail():
  work_meter.reset()
  with pytest.raises(RuntimeError):
    with work_meter.metered("generate", 7):
      raise RuntimeError("boom")
  assert work_meter.totals() == {}
  with work_meter.metered("generate", 1):  # the meter is usable again
    pass
  assert work_meter.totals()["generate"]["count"] == 1
  with pytest.raises(ValueError, match="unknown work kind"):
    with work_meter.metered("fits", 1):
      pass


def test_model_calls_are_metered():
  """Forward rows, clean generations and the engine's cells x targets."""
  lm = tiny_lm("llama")
  ids = np.array([[3, 4, 5, 6], [7, 8, 9, 10]], np.int32)
  mask = np.ones_like(ids)
  work_meter.reset()
  lm(ids, mask)
  lm.generate_ids(ids, mask, max_new_tokens=2, stop="eos")
  engine = Engine(lm, max_new_tokens=2, stop="eos")
  targets = engine.prepare(token_ids=[[3, 4, 5, 6], [3, 4, 9], [3, 4, 7, 8]])
  cells = make_cells("zero", [0, 1], np.zeros((2, targets.slots), bool),
                     lm.config.d_model)
  engine.run(targets, cells)
  t = work_meter.totals()
  assert t["forward"]["count"] == 2 and t["generate"]["count"] == 2
  assert t["engine"]["count"] == 2 * 3  # prepare counts no generations
  assert t["engine"]["calls"] == 2  # prepare and run
  # cells 0 and 1 sit at different layers: two device batches of 1 x 3 rows
  assert t["engine"]["batches"] == {"2-3": {
      "calls": 2, "rows": 6, "seconds": t["engine"]["batches"]["2-3"][
          "seconds"], "compile_s": t["engine"]["batches"]["2-3"][
              "compile_s"]}}
  b = t["engine"]["batches"]["2-3"]
  assert b["compile_s"] > 0 and 0 <= b["seconds"] <= t["engine"]["seconds"]
  for kind in ("forward", "generate", "engine"):
    assert t[kind]["compile_s"] > 0 and t[kind]["seconds"] >= 0


def test_batches_by_power_of_two_rows_net_of_compiling():
  f = jax.jit(lambda x: jnp.tanh(x) @ x.T + 0.5)  # a new program
  x = jnp.ones((256, 256), jnp.float32)
  work_meter.reset()
  with work_meter.batch("engine", 5):
    jax.block_until_ready(f(x))
  with work_meter.batch("engine", 7):
    jax.block_until_ready(f(x))
  with work_meter.batch("engine", 8):
    pass
  b = work_meter.totals()["engine"]["batches"]
  assert list(b) == ["4-7", "8-15"]
  assert b["4-7"]["calls"] == 2 and b["4-7"]["rows"] == 12
  assert b["4-7"]["compile_s"] > 0  # the first call compiled
  assert b["8-15"] == {"calls": 1, "rows": 8, "seconds": b["8-15"]["seconds"],
                       "compile_s": 0.0}
  # batches alone do not count as calls of the kind
  assert work_meter.totals()["engine"]["calls"] == 0
  assert [work_meter.bucket(n) for n in (1, 2, 3, 80, 128)] == [
      1, 2, 2, 64, 128]
  with pytest.raises(ValueError, match="at least one row"):
    work_meter.bucket(0)
  with pytest.raises(RuntimeError):  # a batch that raises is not recorded
    with work_meter.batch("engine", 1):
      raise RuntimeError("boom")
  assert "1-1" not in work_meter.totals()["engine"]["batches"]
  work_meter.reset()
  assert work_meter.totals() == {}
