r"""Patched-generation throughput: exp8's faithful sweep, engine vs loops.

    python benchmarks/sweep.py                  # all methods, writes the JSON
    python benchmarks/sweep.py --method=engine  # one method (prints a JSON)

The workload is the study's exp8 (faithful multi-position transfer) for one
pair, uppercase -> repeat_word, on gemma3-270m: 18 layers x 4 conditions
(all_demo, output_only, input_only, last_demo) x N=20 target prompts = 1440
patched generations of 8 new tokens, greedy. A patch replaces the output of
decoder block L at the condition's absolute token positions during the prompt
forward only (the study's D3: the patched K/V live on in the cache).

Methods (each runs in its own subprocess, so its peak memory is its own):

  engine           icl_jax's vectorized engine, the FULL sweep: `prepare` (clean
                   run of the 20 targets) + `Engine.run` over all 72 cells.
                   Rows stop at the end of their first line (stop rule "line").
                   Compile time is reported separately (JAX's own compile-event
                   durations and the cold first pass); the timed passes are
                   warm. End-to-end time including the source capture and cell
                   building (`build_cells`) is reported too, but the headline
                   figure excludes it because the loop methods get the patch
                   values for free.
  engine_one_cell  (a) the same engine used one generation at a time: per
                   target prompt `prepare([prompt])` once, then one `run` per
                   (cell, prompt). Compile excluded (every prompt-length shape
                   is warmed up first).
  torch_hook       (b) the original study's method: transformers' PyTorch
                   Gemma3ForCausalLM (same GGUF weights, fp32, SDPA attention
                   by default), batch 1, a forward hook on
                   `model.model.layers[L]` that overwrites the positions on its
                   first call only, one `generate(max_new_tokens=8,
                   do_sample=False)` per (cell, prompt).
  nnsight          (c) nnsight (benchmark-only dependency) over the same
                   transformers model: per cell ONE `generate` trace over all
                   20 target prompts (left padding), editing the layer-L output
                   at per-row offsets (position + left-pad offset) on the
                   prefill step only (the default first occurrence of
                   `.output` inside a generate trace).

The loop methods run a stated subset of cells (--subset, default 8 cells spread
over layers and conditions, x 20 prompts = 160 generations) and are
extrapolated per generation. The loop methods always generate all 8 tokens
(as the study did); their outputs are compared with the engine's by the
study's D3 extraction (`text.strip().split("\n")[0].strip()`), and token by
token over the tokens the engine generated. Timings only count if every
compared output agrees (`agreement.all_agree`).

What is timed: wall time of the patched generations (tokenization and the
target clean run included for the engine; model loading, patch-value
computation and warm-up excluded for every method). Peak memory: the
process's peak RSS (VmHWM) during the timed passes, with the high-water mark
reset (`/proc/self/clear_refs`) after loading and warm-up; the RSS at the
start of the timed passes (mostly the weights) is reported beside it.

The parent (--method=all) runs the engine first (it also writes the cells and
the tokenizer for the other methods into --work_dir), then (a), (b), (c), and
writes --out with machine, versions, load averages, every figure and the
ratios (speedup_vs_torch_hook_loop, speedup_vs_nnsight_batched,
speedup_vs_engine_one_cell).
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import platform
import resource
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags

METHODS = ("engine", "engine_one_cell", "torch_hook", "nnsight")
CONDITIONS = ("all_demo", "output_only", "input_only", "last_demo")

flags.DEFINE_enum("method", "all", ("all", "prepare_ref") + METHODS,
                  "which method to run (all: every method, one subprocess "
                  "each, then write --out)")
flags.DEFINE_string("model", "gemma3-270m", "model")
flags.DEFINE_string("pair", "uppercase:repeat_word", "source:target task")
flags.DEFINE_integer("n", 20, "target prompts")
flags.DEFINE_integer("max_new_tokens", 8, "new tokens per generation")
flags.DEFINE_list("subset", ["0:all_demo", "2:output_only", "5:input_only",
                             "7:last_demo", "9:all_demo", "12:output_only",
                             "14:input_only", "17:last_demo"],
                  "layer:condition cells the loop methods run (x n prompts)")
flags.DEFINE_integer("repeats", 2, "timed passes per method (median reported)")
flags.DEFINE_enum("attn", "sdpa", ["sdpa", "eager"],
                  "transformers attention for torch_hook / nnsight")
flags.DEFINE_string("work_dir", None,
                    "cells, tokenizer, reference weights and per-method "
                    "results (default: a private folder made with "
                    "tempfile.mkdtemp, mode 0700, removed at the end)")
flags.DEFINE_string("out", str(Path(__file__).parent / "results" /
                               "sweep.json"), "output JSON (--method=all)")
flags.DEFINE_list("methods", list(METHODS), "methods run by --method=all")
flags.DEFINE_bool("reuse_results", False,
                  "--method=all: reuse per-method results already in "
                  "--work_dir instead of rerunning them (for debugging)")
F = flags.FLAGS


# --------------------------------------------------------------------------
# Process-level measurement helpers
# --------------------------------------------------------------------------

def _status_kb(key: str) -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(key + ":"):
        return int(line.split()[1])
  return -1


def _reset_peak():
  """Frees what can be freed, then resets VmHWM to the current RSS."""
  gc.collect()
  try:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
  except OSError:
    pass
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def _mem_mb() -> dict:
  return {"rss_mb": _status_kb("VmRSS") / 1024,
          "peak_rss_mb": _status_kb("VmHWM") / 1024}


def _loadavg():
  return list(os.getloadavg())


def _work_dir() -> Path:
  """--work_dir, or a fresh private folder (mkdtemp: unpredictable name,
  mode 0700) made on first use: nothing another user can plant files in."""
  if not F.work_dir:
    F.work_dir = tempfile.mkdtemp(prefix="icl_jax_sweep_bench-")
    _CREATED.append(F.work_dir)
  return Path(F.work_dir)


_CREATED: list[str] = []


def _paths():
  w = _work_dir()
  return {"cells": w / "cells.npz", "meta": w / "cells.json",
          "tokenizer": w / "tokenizer",
          # weights only (safetensors) + the config: nothing is unpickled
          "ref": w / "ref_model.safetensors", "ref_config": w / "ref_config",
          "result": lambda m: w / f"result_{m}.json"}


def _subset_cells(meta):
  """Indices of the --subset cells in the engine's cell order."""
  index = {(m["layer"], m["condition"]): i for i, m in enumerate(meta)}
  out = []
  for item in F.subset:
    layer, cond = item.split(":")
    out.append(index[(int(layer), cond)])
  return out


def _load_cells():
  import numpy as np

  p = _paths()
  z = np.load(p["cells"])
  meta = json.loads(p["meta"].read_text())
  return z, meta


def _torch_model():
  """The transformers reference (fp32, dequantized from the same GGUF).

  `load_reference` converts the GGUF (slow); the converted weights are saved
  once into work_dir as safetensors, with the model's config.json
  (transformers refuses `save_pretrained` for a model that came from a GGUF
  file), and rebuilt from those: only tensors are read back, never a pickle.
  """
  import safetensors.torch
  import torch
  from transformers import AutoConfig, AutoModelForCausalLM

  p = _paths()
  if not p["ref"].exists():
    from icl_jax.convert.parity import load_reference

    ref = load_reference(F.model)
    p["ref_config"].mkdir(parents=True, exist_ok=True)
    ref.config.to_json_file(str(p["ref_config"] / "config.json"))
    tmp = p["ref"].with_name(p["ref"].name + f".{os.getpid()}.tmp")
    safetensors.torch.save_model(ref, str(tmp))
    os.replace(tmp, p["ref"])
  else:
    config = AutoConfig.from_pretrained(str(p["ref_config"]),
                                        trust_remote_code=False)
    ref = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # strict: every tensor of the model comes from the file (tied weights
    # are handled by safetensors' save_model / load_model pair)
    safetensors.torch.load_model(ref, str(p["ref"]), strict=True)
  ref.config._attn_implementation = "eager"
  ref.set_attn_implementation(F.attn)
  return ref.eval()


def _tokenizer():
  from transformers import AutoTokenizer

  return AutoTokenizer.from_pretrained(str(_paths()["tokenizer"]),
                                       trust_remote_code=False)


def _versions():
  import importlib.metadata as md

  out = {"python": platform.python_version()}
  for name in ("jax", "jaxlib", "flax", "torch", "transformers", "nnsight",
               "numpy", "icl_jax"):
    try:
      out[name] = md.version(name)
    except md.PackageNotFoundError:
      out[name] = None
  return out


def _machine():
  cpu = ""
  try:
    for line in open("/proc/cpuinfo"):
      if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
  try:
    affinity = len(os.sched_getaffinity(0))
  except AttributeError:
    affinity = None
  return {"platform": platform.platform(), "cpu": cpu,
          "cpu_count": os.cpu_count(), "cpus_usable": affinity,
          "ram_gib": round(ram, 1), "accelerator": "none (CPU only)"}


def _timed(fn):
  """Runs fn(); returns (its result, a record of wall/CPU time and load)."""
  la = _loadavg()
  r0 = resource.getrusage(resource.RUSAGE_SELF)
  t = time.perf_counter()
  out = fn()
  wall = time.perf_counter() - t
  r1 = resource.getrusage(resource.RUSAGE_SELF)
  cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
  return out, {"wall_s": wall, "cpu_s": cpu, "loadavg_before": la,
               "loadavg_after": _loadavg()}


def _timed_passes(one_pass):
  """--repeats timed passes after a peak reset.

  Returns (the last pass's outputs {(cell, prompt): (tokens, text)}, the
  pass records, the memory record).
  """
  _reset_peak()
  start_mem = _mem_mb()
  passes = []
  for _ in range(F.repeats):
    outs, rec = _timed(one_pass)
    passes.append(rec)
  mem = _mem_mb()
  return outs, passes, {"rss_before_timed_mb": start_mem["rss_mb"],
                        "peak_rss_timed_mb": mem["peak_rss_mb"]}


def _outputs(outs):
  return [[c, n, toks, text] for (c, n), (toks, text) in sorted(outs.items())]


def _summary(passes, n_gen, key="wall_s"):
  """Median over passes; `passes` are _timed records (or dicts with key)."""
  times = [p[key] for p in passes]
  med = statistics.median(times)
  out = {"times_s": times, "median_s": med, "min_s": min(times),
         "generations": n_gen, "generations_per_s": n_gen / med,
         "generations_per_s_best": n_gen / min(times)}
  if all("cpu_s" in p for p in passes):
    cpu = statistics.median(p["cpu_s"] for p in passes)
    out["cpu_s_median"] = cpu
    out["cpu_s_per_generation"] = cpu / n_gen
  return out


# --------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------

def run_engine():
  """Full sweep with the engine; also writes the cells for the others."""
  import numpy as np
  import jax

  import icl_jax
  from icl_jax.analysis.compile_count import CompileCounter
  from icl_jax.studies import plans, setups
  from icl_jax.interventions.engine import Engine

  compiles = CompileCounter().start()

  src, tgt = F.pair.split(":")
  t = time.perf_counter()
  lm = icl_jax.load(F.model)
  load_s = time.perf_counter() - t
  engine = Engine(lm, max_new_tokens=F.max_new_tokens, stop="line",
                  timing="prefill")
  setup = setups.setup_pairs([(src, tgt)], F.n)[0]
  prompts = [e.prompt().text for e in setup.target_episodes]
  layers = list(range(lm.n_layers))
  _ = lm.stop_tables  # built once (decodes the vocabulary), not timed
  load_peak = _mem_mb()

  def sweep():
    t0 = time.perf_counter()
    targets = engine.prepare(prompts=prompts)
    jax.block_until_ready(targets.clean)
    t1 = time.perf_counter()
    job = plans.transfer_job("faithful", setup, layers, list(CONDITIONS),
                             style="transfer", own_index=True)
    ps = job.build(engine, targets, job.cells)
    cells = plans.plans_to_cells(ps, targets.slots, lm.config.d_model)
    meta = [{"condition": x.condition, "layer": int(x.layer),
             "n_positions": len(x.tgt_idx),
             "positions": sorted(int(i) for i in x.tgt_idx), **x.meta}
            for x in ps]
    t2 = time.perf_counter()
    res = engine.run(targets, cells)
    t3 = time.perf_counter()
    return targets, cells, meta, res, {"prepare_s": t1 - t0,
                                       "build_cells_s": t2 - t1,
                                       "run_s": t3 - t2}

  # Cold pass: compiles clean_run, the source capture and sweep_layer.
  _reset_peak()
  compiles.clear()
  t = time.perf_counter()
  targets, cells, meta, res, parts = sweep()
  cold_s = time.perf_counter() - t
  cold_mem = _mem_mb()
  compile_s = compiles.seconds
  compile_by_kind = compiles.seconds_by_kind()
  cold_compiles = compiles.count

  # Cells and tokenizer for the other methods.
  p = _paths()
  p["cells"].parent.mkdir(parents=True, exist_ok=True)
  ids = targets.token_ids
  lengths = np.array([len(s) for s in ids], np.int32)
  ids_arr = np.zeros((len(ids), lengths.max()), np.int32)
  for i, s in enumerate(ids):
    ids_arr[i, :len(s)] = s
  np.savez(p["cells"], ids=ids_arr, lengths=lengths, layer=cells.layer,
           mask=cells.mask, values=cells.values, tokens=res.tokens,
           n_gen=res.n_gen)
  p["meta"].write_text(json.dumps({"meta": meta, "texts": res.texts,
                                   "prompts": prompts}))
  lm.tokenizer.save_pretrained(str(p["tokenizer"]))

  # Warm passes (timed).
  compiles.clear()
  _reset_peak()
  start_mem = _mem_mb()
  runs = []
  for _ in range(F.repeats):
    (_, _, _, res2, parts2), rec = _timed(sweep)
    parts2.update(rec)
    runs.append(parts2)
    if not (np.array_equal(res2.tokens, res.tokens)
            and np.array_equal(res2.n_gen, res.n_gen)):
      raise RuntimeError("engine passes disagree")
  warm_mem = _mem_mb()
  n_gen = len(cells) * targets.n
  for r in runs:
    r["headline_s"] = r["prepare_s"] + r["run_s"]
  out = {
      "method": "engine",
      "what": "full sweep: prepare (clean run of the targets) + Engine.run "
              "over all cells; build_cells (source capture) excluded from "
              "the headline, included in end_to_end",
      "cells": len(cells), "prompts": targets.n,
      "prefix_len": targets.prefix_len, "query_len": targets.query_len,
      "generated_tokens_total": int(res.n_gen.sum()),
      "chunk_cells": engine.chunk_size(targets),
      **_summary(runs, n_gen, "headline_s"),
      "end_to_end": _summary(runs, n_gen, "wall_s"),
      "passes": runs,
      "compile_s": compile_s, "compile_s_by_kind": compile_by_kind,
      "compiles_cold_pass": cold_compiles,
      "compile_events_in_warm_passes": len(compiles.events),
      "cold_pass_s": cold_s, "cold_pass_parts": parts,
      "model_load_s": load_s,
      "memory": {"after_load": load_peak, "rss_before_timed_mb":
                 start_mem["rss_mb"], "peak_rss_timed_mb":
                 warm_mem["peak_rss_mb"], "peak_rss_cold_pass_mb":
                 cold_mem["peak_rss_mb"]},
      "jax_devices": [str(d) for d in jax.devices()],
  }
  return out


def _targets_and_subset():
  z, meta = _load_cells()
  subset = _subset_cells(meta["meta"])
  ids = [z["ids"][i, :z["lengths"][i]].tolist() for i in range(len(z["ids"]))]
  return z, meta, subset, ids


def _positions(z, c, length):
  import numpy as np

  return [int(p) for p in np.nonzero(z["mask"][c])[0] if p < length]


def run_engine_one_cell():
  """(a): the engine, one (cell, prompt) generation per call."""
  import numpy as np

  import icl_jax
  from icl_jax.interventions.engine import Engine
  from icl_jax.interventions.spec import make_cells

  z, meta, subset, ids = _targets_and_subset()
  lm = icl_jax.load(F.model)
  engine = Engine(lm, max_new_tokens=F.max_new_tokens, stop="line",
                  timing="prefill")
  _ = lm.stop_tables
  D = lm.config.d_model

  def cell_for(c, length):
    mask = np.zeros((1, length), bool)
    pos = _positions(z, c, length)
    mask[0, pos] = True
    vals = np.zeros((1, length, D), np.float32)
    vals[0, pos] = z["values"][c][pos]
    return make_cells("replace", [int(z["layer"][c])], mask, D, values=vals)

  def one_pass():
    out = {}
    for n, s in enumerate(ids):
      targets = engine.prepare(token_ids=[s])
      for c in subset:
        r = engine.run(targets, cell_for(c, len(s)))
        out[(c, n)] = (r.tokens[0, 0, :r.n_gen[0, 0]].tolist(), r.texts[0][0])
    return out

  # Warm-up: one generation per distinct prompt length (one compile each).
  from icl_jax.analysis.compile_count import CompileCounter

  compiles = CompileCounter().start()
  t = time.perf_counter()
  seen = set()
  for s in ids:
    if len(s) not in seen:
      seen.add(len(s))
      engine.run(engine.prepare(token_ids=[s]), cell_for(subset[0], len(s)))
  warm_s = time.perf_counter() - t
  compile_s = compiles.seconds
  compiles.clear()
  outs, passes, memory = _timed_passes(one_pass)
  return {
      "method": "engine_one_cell",
      "what": "per prompt prepare([prompt]) once, then one Engine.run per "
              "(cell, prompt); subset of cells",
      "subset_cells": subset, **_summary(passes, len(outs)),
      "passes": passes, "compile_s": compile_s,
      "warmup_s": warm_s,
      "compile_events_in_timed_passes": len(compiles.events),
      "memory": memory, "outputs": _outputs(outs),
  }


def _torch_result(method, what, ref, subset, outs, passes, warm_s, memory):
  """The result dict of a transformers-based loop method."""
  import torch

  return {
      "method": method, "what": what,
      "attn_implementation": ref.config._attn_implementation,
      "torch_threads": torch.get_num_threads(),
      "subset_cells": subset, **_summary(passes, len(outs)),
      "passes": passes, "warmup_s": warm_s,
      "memory": memory, "outputs": _outputs(outs),
  }


def run_torch_hook():
  """(b): transformers + forward hook, batch 1, one generate per cell."""
  import torch

  z, meta, subset, ids = _targets_and_subset()
  ref = _torch_model()
  tok = _tokenizer()
  eos = int(tok.eos_token_id)
  layers = ref.model.layers

  def generate(c, n):
    s = ids[n]
    pos = torch.tensor(_positions(z, c, len(s)), dtype=torch.long)
    vals = torch.from_numpy(z["values"][c][pos.numpy()])
    first = [True]

    def hook(module, args, output):
      # transformers 5.x decoder layers return the hidden states tensor.
      if first[0]:
        first[0] = False
        output[0, pos] = vals
      return output

    h = layers[int(z["layer"][c])].register_forward_hook(hook)
    try:
      with torch.no_grad():
        g = ref.generate(torch.tensor([s]), max_new_tokens=F.max_new_tokens,
                         do_sample=False, pad_token_id=eos)
    finally:
      h.remove()
    new = g[0, len(s):].tolist()
    return new, tok.decode(new, skip_special_tokens=True)

  t = time.perf_counter()
  generate(subset[0], 0)  # warm-up
  warm_s = time.perf_counter() - t
  outs, passes, memory = _timed_passes(
      lambda: {(c, n): generate(c, n) for c in subset
               for n in range(len(ids))})
  return _torch_result(
      "torch_hook",
      "transformers Gemma3ForCausalLM fp32, forward hook on "
      "model.model.layers[L] editing its first call, batch 1, one "
      f"generate(max_new_tokens={F.max_new_tokens}, greedy) per "
      "(cell, prompt); subset of cells",
      ref, subset, outs, passes, warm_s, memory)


def run_nnsight():
  """(c): nnsight, one batched generate trace per cell (all prompts)."""
  import warnings

  import torch
  import nnsight

  z, meta, subset, ids = _targets_and_subset()
  ref = _torch_model()
  tok = _tokenizer()
  tok.padding_side = "left"
  eos = int(tok.eos_token_id)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model = nnsight.TransformersModel(ref, task="text-generation",
                                      tokenizer=tok)
  width = max(len(s) for s in ids)

  def generate(c):
    rows, cols, src = [], [], []
    for b, s in enumerate(ids):
      for p in _positions(z, c, len(s)):
        rows.append(b)
        cols.append(p + width - len(s))  # left padding offset of row b
        src.append(p)
    rows_t = torch.tensor(rows, dtype=torch.long)
    cols_t = torch.tensor(cols, dtype=torch.long)
    vals = torch.from_numpy(z["values"][c][src])
    layer = int(z["layer"][c])
    # Ragged token ids: nnsight left-pads them (tokenizer.padding_side) and
    # supplies mask-derived position_ids. `.output` in a generate trace is
    # the first occurrence, i.e. the prefill forward only.
    with model.generate(ids, max_new_tokens=F.max_new_tokens,
                        do_sample=False, pad_token_id=eos) as tracer:
      model.model.layers[layer].output[rows_t, cols_t] = vals
      result = tracer.result.save()
    gen = result[:, width:]
    out = {}
    for n in range(len(ids)):
      new = gen[n].tolist()
      out[(c, n)] = (new, tok.decode(new, skip_special_tokens=True))
    return out

  t = time.perf_counter()
  generate(subset[0])  # warm-up
  warm_s = time.perf_counter() - t

  def one_pass():
    outs = {}
    for c in subset:
      outs.update(generate(c))
    return outs

  outs, passes, memory = _timed_passes(one_pass)
  return _torch_result(
      "nnsight",
      "nnsight TransformersModel over the same transformers model; per cell "
      "one generate trace over all prompts (left padding, per-row offsets), "
      "edit on the prefill step only; subset of cells",
      ref, subset, outs, passes, warm_s, memory)


# --------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------

def agreement(result, z, meta):
  """Compares a loop method's outputs with the engine's, per (cell, prompt)."""
  from icl_jax.tasks import extract_d3

  texts = meta["texts"]
  n_text = n_tok = 0
  examples = []
  for c, n, toks, text in result["outputs"]:
    ng = int(z["n_gen"][c][n])
    eng_toks = z["tokens"][c][n][:ng].tolist()
    ok_text = extract_d3(text) == extract_d3(texts[c][n])
    ok_tok = toks[:ng] == eng_toks
    n_text += ok_text
    n_tok += ok_tok
    if not (ok_text and ok_tok) and len(examples) < 10:
      m = meta["meta"][c]
      examples.append({"layer": m["layer"], "condition": m["condition"],
                       "prompt": n, "engine": texts[c][n], "method": text,
                       "first_line_agrees": ok_text,
                       "tokens_agree": ok_tok})
  total = len(result["outputs"])
  return {"compared": total, "first_line_agree": n_text,
          "token_prefix_agree": n_tok, "all_agree": n_text == total,
          "disagreements": examples}


def run_child(method):
  path = _paths()["result"](method)
  if F.reuse_results and path.exists():
    return json.loads(path.read_text())
  cmd = [sys.executable, __file__, f"--method={method}"] + [
      f"--{k}={getattr(F, k)}" for k in ("model", "pair", "n",
                                         "max_new_tokens", "repeats", "attn",
                                         "work_dir")] + [
      "--subset=" + ",".join(F.subset)]
  print(f"[{time.strftime('%H:%M:%S')}] {method} (load {_loadavg()})",
        flush=True)
  t = time.perf_counter()
  subprocess.run(cmd, check=True)
  print(f"  done in {time.perf_counter() - t:.0f}s", flush=True)
  return json.loads(path.read_text())


def main_all():
  p = _paths()
  _work_dir().mkdir(parents=True, exist_ok=True)
  try:
    _main_all(p)
  finally:
    for d in _CREATED:  # the private folder made for this run
      shutil.rmtree(d, ignore_errors=True)


def _main_all(p):
  results = {}
  load_before = _loadavg()
  # The engine first (it writes the cells); the reference model is converted
  # and saved once before the torch methods so neither pays for it.
  results["engine"] = run_child("engine")
  if {"torch_hook", "nnsight"} & set(F.methods):
    if not p["ref"].exists():
      subprocess.run([sys.executable, __file__, "--method=prepare_ref",
                      f"--model={F.model}", f"--work_dir={F.work_dir}"],
                     check=True)
  for m in METHODS[1:]:
    if m in F.methods:
      results[m] = run_child(m)
  load_after = _loadavg()

  z, meta = _load_cells()
  eng = results["engine"]
  report = {
      "benchmark": "exp8 faithful multi-position transfer sweep "
                   "(patched generations)",
      "command": "python benchmarks/sweep.py " + " ".join(sys.argv[1:]),
      "model": F.model, "pair": F.pair, "n_prompts": F.n,
      "layers": eng["cells"] // len(CONDITIONS),
      "conditions": list(CONDITIONS), "max_new_tokens": F.max_new_tokens,
      "full_sweep_generations": eng["generations"],
      "loop_subset": {"cells": F.subset,
                      "generations": len(F.subset) * F.n,
                      "note": "loop methods timed on this subset and "
                              "extrapolated per generation"},
      "timing": {"repeats": F.repeats, "statistic": "median of the passes",
                 "loadavg_1_5_15_before": load_before,
                 "loadavg_1_5_15_after": load_after},
      "machine": _machine(), "versions": _versions(),
      "methods": {},
  }
  eng = dict(eng)
  report["methods"]["engine"] = eng
  gps = {"engine": eng["generations_per_s"]}
  all_agree = True
  for m in METHODS[1:]:
    if m not in results:
      continue
    r = dict(results[m])
    r["agreement"] = agreement(r, z, meta)
    all_agree &= r["agreement"]["all_agree"]
    r["extrapolated_full_sweep_s"] = (eng["generations"]
                                      / r["generations_per_s"])
    del r["outputs"]
    report["methods"][m] = r
    gps[m] = r["generations_per_s"]
  report["generations_per_s"] = gps
  report["all_outputs_agree"] = all_agree
  report["timings_count"] = all_agree
  names = {"torch_hook": "speedup_vs_torch_hook_loop",
           "nnsight": "speedup_vs_nnsight_batched",
           "engine_one_cell": "speedup_vs_engine_one_cell"}
  for m, key in names.items():
    if m in gps:
      report[key] = gps["engine"] / gps[m]
      report[key + "_end_to_end"] = (
          eng["end_to_end"]["generations_per_s"] / gps[m])
  # Contention-robust secondary figure: process CPU time per generation
  # (engine: whole warm sweep including build_cells).
  report["cpu_s_per_generation"] = {
      m: report["methods"][m].get("cpu_s_per_generation")
      for m in report["methods"]}
  report["cpu_s_per_generation"]["engine"] = eng["end_to_end"].get(
      "cpu_s_per_generation")
  report["engine_compile_s"] = eng["compile_s"]
  report["peak_rss_mb"] = {m: report["methods"][m]["memory"][
      "peak_rss_timed_mb"] for m in report["methods"]}
  out = Path(F.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(report, indent=1) + "\n")
  print(json.dumps({k: report[k] for k in report if k.startswith("speedup")
                    or k in ("generations_per_s", "all_outputs_agree",
                             "cpu_s_per_generation",
                             "engine_compile_s", "peak_rss_mb")}, indent=1))
  print(f"wrote {out}")


def main(argv):
  del argv
  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.WARNING)
  if F.method == "all":
    return main_all()
  if F.method == "prepare_ref":
    _torch_model()
    return
  fn = {"engine": run_engine, "engine_one_cell": run_engine_one_cell,
        "torch_hook": run_torch_hook, "nnsight": run_nnsight}[F.method]
  res = fn()
  res["versions"] = _versions()
  path = _paths()["result"](F.method)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(res))
  print(json.dumps({k: v for k, v in res.items() if k != "outputs"}))


if __name__ == "__main__":
  app.run(main)
