"""icl_jax.analysis.compile_count: XLA compile events, counted."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np

from icl_jax.analysis.compile_count import CompileCounter


def test_counts_new_programs_only():
  c = CompileCounter().start()
  f = jax.jit(lambda x: x * 3.0 + 1.0)
  f(np.ones(7, np.float32)).block_until_ready()
  first = c.count
  assert first >= 1 and c.seconds > 0
  assert "backend_compile_duration" in c.seconds_by_kind()
  f(np.ones(7, np.float32)).block_until_ready()  # cached: no new compile
  assert c.count == first
  f(np.ones(9, np.float32)).block_until_ready()  # new shape: one more program
  assert c.count == first + 1
  c.stop()
  jax.jit(lambda x: x - 2.0)(np.ones(3)).block_until_ready()
  assert c.count == first + 1
  c.clear()
  assert c.count == 0 and c.record()["compiles"] == 0


def test_runs_a_script_and_records(tmp_path):
  script = tmp_path / "s.py"
  script.write_text("import sys, jax, jax.numpy as jnp\n"
                    "assert sys.argv[1:] == ['--x=1']\n"
                    "jax.jit(lambda x: x + 1)(jnp.ones(3)).block_until_ready()\n")
  rec = tmp_path / "c.json"
  p = subprocess.run([sys.executable, "-m", "icl_jax.analysis.compile_count",
                      f"--record={rec}", "--", str(script), "--x=1"],
                     capture_output=True, text=True, timeout=300)
  assert p.returncode == 0, p.stderr
  assert "[compile_count]" in p.stdout
  assert json.loads(rec.read_text())["compiles"] >= 1
