r"""Forward throughput: jit-compiled Flax vs transformers PyTorch, side by side.

    python benchmarks/forward.py --model=gemma3-270m --batch=20 --repeats=5

Same prompts (the 20 five-shot parity prompts, left padded to one length),
same machine, fp32. Reports prompt tokens per second (real tokens, padding
excluded) for: ours (jit, compile time reported separately), transformers
with eager attention and with its default SDPA attention; each both with full
[B,T,V] logits and with last-position logits only (the forward the
experiments run). Writes benchmarks/results/forward.json.

Each side runs in its own worker process (`--worker=ours|torch`), so neither
shares a process, thread pools or allocator with the other. The coordinator
alternates the timed calls between the workers in every repetition (load
drift on a shared machine hits both alike) and waits `--settle_s` before each
call, so the idle worker's spinning threads (OpenMP in torch, Eigen's pool in
XLA) have gone to sleep when the other is timed. (Earlier versions ran both in
one process; torch's OpenMP threads then spun while XLA ran.)
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from absl import app, flags

flags.DEFINE_string("model", "gemma3-270m", "model to benchmark")
flags.DEFINE_integer("batch", 20, "prompts per forward")
flags.DEFINE_integer("repeats", 5, "timed repetitions (median reported)")
flags.DEFINE_float("settle_s", 1.0, "pause before every timed call")
flags.DEFINE_enum("worker", None, ["ours", "torch"],
                  "internal: run as the worker of one implementation")
flags.DEFINE_string("out", str(Path(__file__).parent / "results" /
                               "forward.json"), "output JSON")
F = flags.FLAGS

# Timed runs: name -> (worker, what the worker runs).
RUNS = {"ours": ("ours", "all"), "torch_eager": ("torch", "eager"),
        "torch_sdpa": ("torch", "sdpa"), "ours_last": ("ours", "last"),
        "torch_eager_last": ("torch", "eager_last"),
        "torch_sdpa_last": ("torch", "sdpa_last")}


def _inputs(lm):
  from icl_jax.convert.parity import PARITY_PROMPTS

  prompts = [PARITY_PROMPTS[i % len(PARITY_PROMPTS)] for i in range(F.batch)]
  return lm.encode(prompts)  # ids [B,T], mask [B,T], lengths [B]


def _worker_fns(kind):
  """{what: callable} for one implementation, warmed up; and extra facts."""
  import jax
  import numpy as np

  import icl_jax

  lm = icl_jax.load(F.model)
  ids, mask, lengths = _inputs(lm)
  facts = {"real_tokens_per_forward": int(lengths.sum()),
           "padded_len": int(ids.shape[1])}
  if kind == "ours":
    def ours(which):
      def fn():
        jax.block_until_ready(lm(ids, mask, logits=which).logits)
      return fn
    fns = {"all": ours("all"), "last": ours("last")}
    t = time.perf_counter()
    fns["all"]()
    facts["ours_compile_plus_first_s"] = time.perf_counter() - t
  else:
    import torch

    from icl_jax.convert.parity import load_reference

    del lm
    ref = load_reference(F.model)
    ids_t = torch.tensor(np.asarray(ids), dtype=torch.long)
    mask_t = torch.tensor(np.asarray(mask), dtype=torch.long)
    pos_t = torch.tensor(np.clip(np.cumsum(np.asarray(mask), -1) - 1, 0,
                                 None))

    def theirs(impl, **kw):
      def fn():
        ref.set_attn_implementation(impl)
        with torch.no_grad():
          ref(ids_t, attention_mask=mask_t, position_ids=pos_t, **kw)
      return fn
    # logits_to_keep=1: body + last-position logits, as ours logits="last".
    fns = {"eager": theirs("eager"), "sdpa": theirs("sdpa"),
           "eager_last": theirs("eager", logits_to_keep=1),
           "sdpa_last": theirs("sdpa", logits_to_keep=1)}
    facts["torch_threads"] = torch.get_num_threads()
  for fn in fns.values():
    fn()  # warm up
  return fns, facts


def worker(kind):
  """Line protocol on stdin/stdout: 'ready <facts json>', then for every
  request line `what`, one line with its wall time in seconds."""
  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.WARNING)
  # The protocol gets the original stdout; anything else printed (loading
  # progress, warnings) goes to stderr.
  out = os.fdopen(os.dup(1), "w")
  sys.stdout.flush()
  os.dup2(2, 1)
  fns, facts = _worker_fns(kind)
  out.write("ready " + json.dumps(facts) + "\n")
  out.flush()
  for line in sys.stdin:
    what = line.strip()
    if not what:
      break
    t = time.perf_counter()
    fns[what]()
    out.write(f"{time.perf_counter() - t!r}\n")
    out.flush()


def _start(kind):
  cmd = [sys.executable, __file__, f"--worker={kind}", f"--model={F.model}",
         f"--batch={F.batch}"]
  p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       text=True)
  line = p.stdout.readline()
  if not line.startswith("ready "):
    p.kill()
    raise RuntimeError(f"worker {kind} failed to start (see its stderr)")
  return p, json.loads(line[len("ready "):])


def coordinate():
  import jax
  import torch
  import transformers

  import icl_jax

  result = {
      "load_average_before": list(os.getloadavg()),
      "model": F.model, "batch": F.batch, "dtype": "float32",
      "settle_s": F.settle_s,
      "machine": {"platform": platform.platform(),
                  "processor": platform.processor(),
                  "cpu_count": os.cpu_count(),
                  "jax_devices": [str(d) for d in jax.devices()]},
      "versions": {"jax": jax.__version__, "torch": torch.__version__,
                   "transformers": transformers.__version__,
                   "icl_jax": icl_jax.__version__},
  }
  # One worker at a time while loading/compiling, so neither start-up is
  # timed against the other's.
  workers = {}
  for kind in ("ours", "torch"):
    workers[kind], facts = _start(kind)
    result.update({k: v for k, v in facts.items() if k != "torch_threads"})
    if "torch_threads" in facts:
      result["machine"]["torch_threads"] = facts["torch_threads"]
  n_tokens = result["real_tokens_per_forward"]
  times = {k: [] for k in RUNS}
  for _ in range(F.repeats):
    for name, (kind, what) in RUNS.items():
      time.sleep(F.settle_s)
      p = workers[kind]
      p.stdin.write(what + "\n")
      p.stdin.flush()
      times[name].append(float(p.stdout.readline()))
  for p in workers.values():
    p.stdin.write("\n")
    p.stdin.flush()
    p.wait(timeout=60)
  for k, ts in times.items():
    med = statistics.median(ts)
    result[k] = {"median_s": med, "times_s": ts, "tokens_per_s": n_tokens / med}
  for impl in ("eager", "sdpa"):
    for sfx in ("", "_last"):
      result[f"ratio_vs_torch_{impl}{sfx}"] = (
          result[f"torch_{impl}{sfx}"]["median_s"]
          / result[f"ours{sfx}"]["median_s"])
  result["load_average_after"] = list(os.getloadavg())
  result["note"] = ("ratio > 1: ours faster. Plain keys: full [B,T,V] logits "
                    "in both; *_last: body + last-position logits only. One "
                    "worker process per side, timed calls alternated, "
                    f"{F.settle_s} s pause before each.")
  Path(F.out).parent.mkdir(parents=True, exist_ok=True)
  Path(F.out).write_text(json.dumps(result, indent=1))
  print(json.dumps({k: v for k, v in result.items() if k != "machine"},
                   indent=1))


def main(argv):
  del argv
  if F.worker:
    worker(F.worker)
  else:
    coordinate()


if __name__ == "__main__":
  app.run(main)
