r"""Peak resident memory of a first (converting) and a warm (cached) load.

    python benchmarks/load_memory.py --models=gemma3-270m,smollm2-135m,qwen2.5-0.5b

Each load runs in its own fresh process (so ru_maxrss is that load's peak):
the process imports jax, transformers and torch, records its resident memory
(the runtime baseline), then loads the model into an empty converted-model
cache folder (first load) or from it (warm load). A first load also starts
from an empty tokenizer cache (a fresh $ICL_JAX_CACHE holding only links to
the assembled GGUF files of `python -m icl_jax.convert.embedded install`),
so it builds the tokenizer too, as a user's very first load does;
--nofresh_tokenizer keeps the shared tokenizer cache instead. Reported per
model and dtype: fp32 parameter bytes, baseline RSS, peak RSS, and the peak
above the baseline, each also as a multiple of the fp32 parameter bytes.
Results go to benchmarks/results/load_memory.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags

flags.DEFINE_list("models", ["gemma3-270m", "smollm2-135m", "qwen2.5-0.5b"],
                  "embedded names, .gguf files or HF dirs")
flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "load dtypes")
flags.DEFINE_list("phases", ["first", "warm"], "first and/or warm loads")
flags.DEFINE_string("out", "benchmarks/results/load_memory.json", "result file")
flags.DEFINE_bool("fresh_tokenizer", True,
                  "first loads start from an empty tokenizer cache")
F = flags.FLAGS

_CHILD = r"""
import json, resource, sys, time
import jax, numpy as np, torch, transformers  # the runtime, before any load
def rss():
  for line in open("/proc/self/status"):
    if line.startswith("VmRSS:"):
      return int(line.split()[1]) * 1024
base = rss()
import icl_jax
t0 = time.perf_counter()
lm = icl_jax.load(sys.argv[1], dtype=sys.argv[2], cache_dir=sys.argv[3])
secs = time.perf_counter() - t0
n = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(lm.params))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"param_bytes_fp32": 4 * n, "baseline_rss": base,
                  "peak_rss": peak, "seconds": secs,
                  "source": lm.load_info["source"],
                  "verify_seconds": lm.load_info["cache_verify_seconds"]}))
"""


def _run(model, dtype, cache_dir, root) -> dict:
  env = dict(os.environ, ICL_JAX_CACHE=root) if root else None
  out = subprocess.run([sys.executable, "-c", _CHILD, model, dtype, cache_dir],
                       capture_output=True, text=True, check=True, env=env)
  return json.loads(out.stdout.strip().splitlines()[-1])


def _fresh_root(root: Path) -> None:
  """An empty $ICL_JAX_CACHE that links the assembled embedded GGUFs."""
  from icl_jax.convert import embedded

  for p in root.iterdir():
    subprocess.run(["rm", "-rf", str(p)], check=True)
  src = embedded.cache_root() / "gguf"
  if src.is_dir():
    (root / "gguf").mkdir()
    for f in src.glob("*.gguf"):
      (root / "gguf" / f.name).symlink_to(f.resolve())


def main(argv):
  del argv
  rows = []
  for model in F.models:
    with tempfile.TemporaryDirectory() as cache_dir, \
         tempfile.TemporaryDirectory() as root:
      root = root if F.fresh_tokenizer else None
      for phase in F.phases:
        for dtype in F.dtypes:
          if phase == "first":  # every first load starts from an empty cache
            for p in Path(cache_dir).iterdir():
              subprocess.run(["rm", "-rf", str(p)], check=True)
            if root:
              _fresh_root(Path(root))
          r = _run(model, dtype, cache_dir, root)
          pb = r["param_bytes_fp32"]
          r.update(model=model, dtype=dtype, phase=phase,
                   tokenizer_cache=("empty" if root and phase == "first"
                                    else "filled"),
                   peak_over_params=round(r["peak_rss"] / pb, 3),
                   peak_above_baseline_over_params=round(
                       (r["peak_rss"] - r["baseline_rss"]) / pb, 3))
          rows.append(r)
          print(f"{model:14} {dtype:9} {phase:5} params {pb / 2**30:5.2f} GiB "
                f"base {r['baseline_rss'] / 2**30:5.2f} peak "
                f"{r['peak_rss'] / 2**30:5.2f} GiB = {r['peak_over_params']:.2f}x"
                f" (above base {r['peak_above_baseline_over_params']:.2f}x) "
                f"{r['seconds']:6.1f}s verify {r['verify_seconds']:.2f}s",
                flush=True)
  Path(F.out).parent.mkdir(parents=True, exist_ok=True)
  prev = json.loads(Path(F.out).read_text()) if Path(F.out).exists() else {}
  prev.update({f"{r['model']}|{r['dtype']}|{r['phase']}": r for r in rows})
  prev["_measured"] = time.strftime("%Y-%m-%d %H:%M")
  Path(F.out).write_text(json.dumps(prev, indent=1, sort_keys=True))


if __name__ == "__main__":
  app.run(main)
