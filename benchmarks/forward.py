r"""Forward throughput: jit-compiled Flax vs transformers PyTorch, side by side.

    python benchmarks/forward.py --model=gemma3-270m --batch=20 --repeats=5

Same prompts (the 20 five-shot parity prompts, left padded to one length),
same machine, same process, fp32. Reports prompt tokens per second (real
tokens, padding excluded) for: ours (jit, compile time reported separately),
transformers with eager attention and with its default SDPA attention; each
both with full [B,T,V] logits and with last-position logits only (the forward
the experiments run). Writes benchmarks/results/forward.json.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

from absl import app, flags

flags.DEFINE_string("model", "gemma3-270m", "model to benchmark")
flags.DEFINE_integer("batch", 20, "prompts per forward")
flags.DEFINE_integer("repeats", 5, "timed repetitions (median reported)")
flags.DEFINE_string("out", str(Path(__file__).parent / "results" /
                               "forward.json"), "output JSON")
F = flags.FLAGS


def main(argv):
  del argv
  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.WARNING)
  import jax
  import numpy as np
  import torch
  import transformers

  import icl_jax
  from icl_jax.convert.parity import PARITY_PROMPTS, load_reference

  lm = icl_jax.load(F.model)
  prompts = [PARITY_PROMPTS[i % len(PARITY_PROMPTS)] for i in range(F.batch)]
  ids, mask, lengths = lm.encode(prompts)
  n_tokens = int(lengths.sum())
  result = {
      "load_average_before": list(os.getloadavg()),
      "model": F.model, "batch": F.batch, "padded_len": int(ids.shape[1]),
      "real_tokens_per_forward": n_tokens, "dtype": "float32",
      "machine": {"platform": platform.platform(),
                  "processor": platform.processor(),
                  "cpu_count": os.cpu_count(),
                  "jax_devices": [str(d) for d in jax.devices()],
                  "torch_threads": torch.get_num_threads()},
      "versions": {"jax": jax.__version__, "torch": torch.__version__,
                   "transformers": transformers.__version__,
                   "icl_jax": icl_jax.__version__},
  }

  def ours_fn(which):
    def fn():
      out = lm(ids, mask, logits=which)
      jax.block_until_ready(out.logits)
    return fn

  ours, ours_last = ours_fn("all"), ours_fn("last")
  t = time.perf_counter()
  ours()
  result["ours_compile_plus_first_s"] = time.perf_counter() - t

  ref = load_reference(F.model)
  ids_t = torch.tensor(ids, dtype=torch.long)
  mask_t = torch.tensor(mask, dtype=torch.long)
  pos_t = torch.tensor(np.clip(np.cumsum(mask, -1) - 1, 0, None))

  def theirs(impl, **kw):
    def fn():
      ref.set_attn_implementation(impl)
      with torch.no_grad():
        ref(ids_t, attention_mask=mask_t, position_ids=pos_t, **kw)
    return fn

  # Full [B,T,V] logits (the plain forward), and the forward every experiment
  # runs: body + last-position logits (ours logits="last", HF
  # logits_to_keep=1).
  runs = {"ours": ours, "torch_eager": theirs("eager"),
          "torch_sdpa": theirs("sdpa"),
          "ours_last": ours_last,
          "torch_eager_last": theirs("eager", logits_to_keep=1),
          "torch_sdpa_last": theirs("sdpa", logits_to_keep=1)}
  for fn in runs.values():
    fn()  # warm up
  # Interleave the implementations in every repetition, so load drift on a
  # shared machine hits all of them alike.
  times = {k: [] for k in runs}
  for _ in range(F.repeats):
    for k, fn in runs.items():
      t = time.perf_counter()
      fn()
      times[k].append(time.perf_counter() - t)
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
                    "in both; *_last: body + last-position logits only. "
                    "Interleaved repetitions.")
  Path(F.out).parent.mkdir(parents=True, exist_ok=True)
  Path(F.out).write_text(json.dumps(result, indent=1))
  print(json.dumps({k: v for k, v in result.items() if k != "machine"},
                   indent=1))


if __name__ == "__main__":
  app.run(main)
