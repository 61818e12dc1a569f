"""icl_jax.xla_cache: a second process reuses the first one's compiled
program (no backend compile) and gets bit-identical results."""

import json
import os
import subprocess
import sys

from icl_jax import xla_cache

PROGRAM = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from icl_jax import xla_cache
from icl_jax.analysis.compile_count import CompileCounter

xla_cache.enable(sys.argv[1], min_compile_seconds=0.0)
counter = CompileCounter().start()

@jax.jit
def f(x):  # [64, 64] -> [64]: enough ops that the program is non-trivial
  for _ in range(4):
    x = jnp.tanh(x @ x.T / 8.0)
  return x.sum(-1)

x = (np.arange(64 * 64, dtype=np.float32) / 4096.0).reshape(64, 64)
out = np.asarray(f(x))  # the only compiled program is f
print(json.dumps({"compiled": counter.compiled, "hits": counter.cache_hits,
                  "out": out.tolist()}))
"""


def _run(cache):
  p = subprocess.run([sys.executable, "-c", PROGRAM, str(cache)],
                     capture_output=True, text=True, timeout=300)
  assert p.returncode == 0, p.stderr[-2000:]
  return json.loads(p.stdout.strip().splitlines()[-1])


def test_second_process_loads_instead_of_compiling(tmp_path):
  cache = tmp_path / "xla"
  first = _run(cache)
  assert first["compiled"] == 1 and first["hits"] == 0
  assert any(cache.iterdir())  # the program was written
  second = _run(cache)
  assert second["compiled"] == 0 and second["hits"] == 1
  assert second["out"] == first["out"]  # the same executable: bit-identical


def test_env_switch(monkeypatch, tmp_path):
  monkeypatch.setenv(xla_cache.ENV, "off")
  assert xla_cache.cache_dir() is None
  monkeypatch.setenv(xla_cache.ENV, str(tmp_path / "c"))
  assert xla_cache.cache_dir() == tmp_path / "c"
  monkeypatch.delenv(xla_cache.ENV)
  monkeypatch.setenv("ICL_JAX_CACHE", str(tmp_path / "root"))
  assert xla_cache.cache_dir() == tmp_path / "root" / "xla"
  assert os.environ["ICL_JAX_CACHE"]
