"""Several JAX processes (jax.distributed) give the rows of one process.

Two processes on this machine talk over localhost (gloo CPU collectives),
each with two forced host devices: the engine's cells are sharded over the
4-device global mesh and gathered back on every process. The study-level
check runs experiments/sweep.py under the launcher (results written once, by
process 0) and compares its results.jsonl row for row with a one-process
run. Also: the chunk-size rule from a device's memory_stats (faked).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import jax

import icl_jax
from icl_jax import Patch
from icl_jax.interventions import sharding
from icl_jax.interventions.engine import Engine
from tests.interventions.test_engine_exact import (MAX_NEW, random_cells,
                                                   target_prompts)

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = [sys.executable, "-m", "icl_jax.studies.launch"]

# Run by every process (and in-process for the reference): the engine with
# chunks smaller than the sweep (two chunks), a clean residual, and the
# public run_patches (two patches and the baseline).
_SCRIPT = textwrap.dedent("""
    import json
    import numpy as np, jax
    jax.config.update("jax_default_matmul_precision", "highest")
    from tests.interventions.test_distributed import compute
    print("RESULT " + json.dumps(compute()))
""")


def small_lm():
  """test_engine_exact's tiny gemma3 config with random weights drawn by
  numpy (no compiled init: this module's model is built by three
  processes)."""
  from icl_jax.models.config import config_from_hf
  from icl_jax.models.decoder import init_params
  from icl_jax.models.lm import LanguageModel

  cfg = config_from_hf(dict(
      model_type="gemma3_text", vocab_size=53, hidden_size=32,
      intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
      num_key_value_heads=2, head_dim=8, max_position_embeddings=128,
      eos_token_id=1, pad_token_id=0, sliding_window=6,
      query_pre_attn_scalar=8,
      layer_types=["sliding_attention", "full_attention",
                   "sliding_attention", "full_attention"]))
  shapes = jax.eval_shape(lambda k: init_params(cfg, k), jax.random.PRNGKey(0))
  rs = np.random.RandomState(0)
  params = jax.tree_util.tree_map(
      lambda s: rs.normal(0, 0.5, s.shape).astype(s.dtype), shapes)
  return LanguageModel(cfg, params, tokenizer=None, name="tiny-gemma3_text")


def compute() -> dict:
  lm = small_lm()
  rs = np.random.RandomState(4)
  eng = Engine(lm, max_new_tokens=MAX_NEW, stop="eos", chunk_cells=4)
  t = eng.prepare(token_ids=target_prompts(rs))
  cells = random_cells(lm, t.slots, rs).take(np.arange(8))
  cells.layer[:] = 2  # one layer: 2 chunks of 4 cells, one program
  r = eng.run(t, cells, return_logits=True)
  D = lm.config.d_model
  # Shared by the prompts, at the baseline's layer: one chunk of 4 cells,
  # the program above (the layer is traced).
  patches = [Patch.add(0, list(range(12)), rs.normal(0, 0.5, D)),
             Patch.replace(0, [4, 9, 11], rs.normal(0, 1, (3, D))),
             Patch.noise(0, [2, 3, 5], 0.7, relative=True, seed=3)]
  out = icl_jax.run_patches(lm, target_prompts(rs), patches,
                            max_new_tokens=MAX_NEW, stop="eos", baseline=True,
                            return_logits=True, chunk_cells=4)
  return {"processes": jax.process_count(), "devices": len(jax.devices()),
          "tokens": r.tokens.tolist(), "n_gen": r.n_gen.tolist(),
          "delta": r.delta.tolist(), "logits": r.first_logits.tolist(),
          "residual": t.residual(2).tolist(),
          "api_tokens": out.tokens.tolist(), "api_n_gen": out.n_gen.tolist(),
          "api_clean": out.clean.tokens.tolist(),
          "api_logits": out.logits.tolist()}


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def launch_two(target_args, log_dir, env_extra=None, timeout=240,
               check=True):
  """Runs two processes of one jax.distributed run; returns their stdouts
  (through files: a full pipe would stall one process and so both), or
  with check=False their (return code, stderr)."""
  port = free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT),
             XLA_FLAGS="--xla_force_host_platform_device_count=2",
             **(env_extra or {}))
  logs = [(Path(log_dir) / f"p{i}.out", Path(log_dir) / f"p{i}.err")
          for i in range(2)]
  procs = []
  for i, (out, err) in enumerate(logs):
    with open(out, "w") as fo, open(err, "w") as fe:
      procs.append(subprocess.Popen(
          LAUNCH + [f"--coordinator=localhost:{port}", "--num_processes=2",
                    f"--process_id={i}", *target_args],
          cwd=ROOT, env=env, stdout=fo, stderr=fe))
  try:
    for p, (_, err) in zip(procs, logs):
      p.wait(timeout=timeout)
      assert p.returncode == 0 or not check, err.read_text()[-4000:]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  if not check:
    return [(p.returncode, err.read_text()) for p, (_, err) in
            zip(procs, logs)]
  return [out.read_text() for out, _ in logs]


def test_two_processes_give_the_rows_of_one(tmp_path):
  script = tmp_path / "run_engine.py"
  script.write_text(_SCRIPT)
  outs = launch_two([str(script)], tmp_path)
  got = [json.loads(next(l for l in o.splitlines()
                         if l.startswith("RESULT "))[7:]) for o in outs]
  ref = compute()  # this process: one process, its own devices
  for g in got:
    assert g["processes"] == 2 and g["devices"] == 4
  assert got[0] == got[1]  # every process holds the same rows
  for k in ("tokens", "n_gen", "api_tokens", "api_n_gen", "api_clean"):
    assert got[0][k] == ref[k], k
  for k in ("delta", "logits", "residual", "api_logits"):
    np.testing.assert_allclose(got[0][k], ref[k], rtol=1e-5, atol=1e-5,
                               err_msg=k)


def test_sweep_script_under_two_processes_writes_rows_once(tiny_model_dir,
                                                           tmp_path):
  args = ["experiments/sweep.py", f"--model={tiny_model_dir}", "--n=2",
          "--layers=0,1", "--mode=both", "--pairs=uppercase:repeat_word",
          "--positions=all_demo,output_only"]
  env = {"ICL_JAX_CACHE": str(tmp_path / "cache")}
  one = subprocess.run([sys.executable, *args, f"--out_dir={tmp_path}/one"],
                       cwd=ROOT, env=dict(os.environ, **env),
                       capture_output=True, text=True, timeout=300)
  assert one.returncode == 0, one.stderr[-4000:]
  launch_two([*args, f"--out_dir={tmp_path}/two"], tmp_path, env)
  lines = {w: (tmp_path / w / "sweep" / "results.jsonl").read_text()
           .splitlines() for w in ("one", "two")}
  rows = {w: [json.loads(l) for l in v] for w, v in lines.items()}
  assert len(rows["one"]) == 2 * 2 * 2  # layers x positions x modes
  assert rows["two"] == rows["one"]  # the same rows, each written once
  two = tmp_path / "two" / "sweep"
  assert json.loads((two / "summary.json").read_text())["n_rows"] == 8
  assert (two / "transfer_by_layer.png").stat().st_size > 1000
  # Resumed under two processes: process 0's rows reach process 1, so both
  # skip every finished cell and nothing is appended.
  launch_two([*args, f"--out_dir={tmp_path}/two"], tmp_path, env)
  assert (two / "results.jsonl").read_text().splitlines() == lines["two"]
  # Process 0 refuses another configuration; process 1 learns it and
  # stops too (no process waits for the other).
  bad = [a if a != "--n=2" else "--n=3" for a in args]
  for rc, err in launch_two([*bad, f"--out_dir={tmp_path}/two"], tmp_path,
                            env, check=False):
    assert rc != 0 and "different configuration" in err, err[-2000:]


class FakeDevice:
  """A device whose memory_stats says `limit` bytes, `used` in use."""

  def __init__(self, limit, used, process_index=0):
    self.limit, self.used, self.process_index = limit, used, process_index

  def memory_stats(self):
    return {"bytes_limit": self.limit, "bytes_in_use": self.used}


class CpuLikeDevice(FakeDevice):
  def memory_stats(self):
    return None


def test_chunk_size_from_device_memory():
  gib = 1 << 30
  devs = [FakeDevice(16 * gib, 2 * gib), FakeDevice(16 * gib, 6 * gib)]
  # Half the free memory of the fullest device, for each of the 2 devices.
  budget = sharding.default_memory_budget(devs)
  assert budget == 2 * 5 * gib
  per_cell = 100 << 20
  chunk = sharding.chunk_cells(per_cell, budget, len(devs))
  assert chunk == 102 and chunk % 2 == 0  # 51 cells per device
  assert sharding.chunk_cells(per_cell, budget, 2, fixed=7) == 6
  # Without memory_stats (CPU): a quarter of the host's RAM.
  ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  assert sharding.default_memory_budget([CpuLikeDevice(0, 0)] * 2) == \
      int(ram * 0.25)
  # This machine's devices: the CPU branch here; on a GPU (scripts/
  # gpu_tests.sh) half the free memory of the fullest one, per device.
  free = [sharding.free_device_memory(d) for d in jax.devices()]
  if jax.default_backend() == "cpu":
    assert free == [None] * len(free)
    assert sharding.default_memory_budget() == int(ram * 0.25)
  else:
    assert sharding.default_memory_budget() == \
        int(min(free) * 0.5) * len(free)
  # The engine's chunk is the rule applied to its target set's rows.
  lm = small_lm()
  eng = Engine(lm, max_new_tokens=MAX_NEW, memory_budget=budget)
  t = eng.prepare(token_ids=target_prompts(np.random.RandomState(0)))
  per = t.n * sharding.row_bytes(lm.config, t.slots, MAX_NEW, lm.dtype) + \
      t.slots * lm.config.d_model * 8
  n_dev = len(jax.devices())
  assert eng.chunk_size(t) == max(n_dev, budget // per // n_dev * n_dev)
