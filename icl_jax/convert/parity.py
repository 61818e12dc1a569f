r"""Parity of a converted model against transformers' PyTorch forward.

    python -m icl_jax.convert.parity --model=gemma3-270m
    python -m icl_jax.convert.parity --model=/path/to/hf_dir --tol=1e-4

Reference: transformers, eager attention, fp32, `torch.no_grad()`. On a fixed
set of 5-shot ICL prompts it reports the max absolute and relative logit
difference (relative = / max |reference logit| of the prompt), per-layer
residual differences, and whether greedy continuations agree; it exits 1 when
the relative logit difference exceeds `--tol` or any continuation differs.

Residual convention: our residuals[i] (i < L) are compared with HF
`hidden_states[i]`; HF's last entry is *after* the final norm, so it is
compared with final_norm(our residuals[L]).
"""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np

# Twenty 5-shot prompts in the study's format (demo lists of the study's
# uppercase, repeat_word, first_letter, antonym and linear_2x tasks).
_DEMOS = {
    "uppercase": [("apple", "APPLE"), ("brain", "BRAIN"), ("cloud", "CLOUD"),
                  ("delta", "DELTA"), ("flame", "FLAME")],
    "repeat_word": [("apple", "apple apple"), ("brain", "brain brain"),
                    ("cloud", "cloud cloud"), ("delta", "delta delta"),
                    ("flame", "flame flame")],
    "first_letter": [("apple", "a"), ("brain", "b"), ("cloud", "c"),
                     ("delta", "d"), ("flame", "f")],
    "antonym": [("hot", "cold"), ("big", "small"), ("fast", "slow"),
                ("happy", "sad"), ("light", "dark")],
    "linear_2x": [("3", "6"), ("5", "10"), ("7", "14"), ("2", "4"),
                  ("9", "18")],
}
_QUERIES = {
    "uppercase": ["honey", "frost", "badge", "stone"],
    "repeat_word": ["lemon", "fjord", "ivory", "queen"],
    "first_letter": ["lunar", "youth", "noble", "dream"],
    "antonym": ["tall", "rich", "early", "strong"],
    "linear_2x": ["36", "29", "17", "22"],
}


def icl_prompt(demos, query: str) -> str:
  lines = []
  for x, y in demos:
    lines += [f"Input: {x}", f"Output: {y}", ""]
  lines += [f"Input: {query}", "Output:"]
  return "\n".join(lines)


PARITY_PROMPTS: tuple[str, ...] = tuple(
    icl_prompt(_DEMOS[t], q) for t in _DEMOS for q in _QUERIES[t])


@dataclasses.dataclass
class PromptParity:
  prompt_index: int
  max_abs: float
  max_rel: float
  resid_rel: list[float]  # per residual index, / max |ref hidden state|
  ours: list[int]
  theirs: list[int]

  @property
  def greedy_match(self) -> bool:
    return self.ours == self.theirs


def load_reference(name_or_path):
  """transformers model (eager, fp32) for an embedded name/GGUF/HF dir."""
  import torch
  from transformers import AutoModelForCausalLM

  from icl_jax.convert.loading import CheckpointError, resolve_source

  kind, path, _ = resolve_source(str(name_or_path))
  if kind == "gguf":
    try:
      model = AutoModelForCausalLM.from_pretrained(
          str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except Exception as e:
      raise CheckpointError(f"{path}: cannot load GGUF with transformers "
                            f"({type(e).__name__}: {e})") from e
  else:
    model = AutoModelForCausalLM.from_pretrained(str(path),
                                                 dtype=torch.float32)
  model.config._attn_implementation = "eager"
  model.set_attn_implementation("eager")
  return model.eval()


def compare(lm, ref_model, prompts=PARITY_PROMPTS, new_tokens: int = 8,
            token_ids=None) -> list[PromptParity]:
  """Compares logits, residuals and greedy continuations prompt by prompt."""
  import jax
  import jax.numpy as jnp
  import torch

  from icl_jax.models.decoder import RMSNorm

  cfg = lm.config
  final_norm = RMSNorm(cfg.norm_eps, cfg.norm_offset, lm.dtype)
  seqs = (token_ids if token_ids is not None else
          [lm.tokenizer(p, add_special_tokens=True)["input_ids"]
           for p in prompts])
  results = []
  for i, ids in enumerate(seqs):
    ids_np = np.asarray([ids], np.int64)
    out = lm(ids_np, return_residuals=True)
    ours = np.asarray(out.logits[0], np.float64)
    res = np.asarray(out.residuals[:, 0], np.float64)  # [L+1,T,D]
    normed_last = np.asarray(final_norm.apply(
        {"params": {"scale": lm.params["final_norm"]["scale"]}},
        out.residuals[-1]), np.float64)[0]
    with torch.no_grad():
      ref = ref_model(torch.tensor(ids_np), output_hidden_states=True)
    theirs = ref.logits[0].double().numpy()
    scale = np.abs(theirs).max()
    max_abs = float(np.abs(ours - theirs).max())
    hs = [h[0].double().numpy() for h in ref.hidden_states]
    resid_rel = []
    for j in range(cfg.n_layers + 1):
      mine = res[j] if j < cfg.n_layers else normed_last
      resid_rel.append(float(np.abs(mine - hs[j]).max()
                             / max(np.abs(hs[j]).max(), 1e-30)))
    # Greedy continuation: HF generate vs our KV-cached loop (EOS stop only,
    # so both produce exactly `new_tokens` unless EOS comes first).
    with torch.no_grad():
      g = ref_model.generate(torch.tensor(ids_np), max_new_tokens=new_tokens,
                             do_sample=False, pad_token_id=lm.pad_id)
    theirs_gen = g[0, len(ids):].tolist()
    toks, n = lm.generate_ids(ids_np.astype(np.int32),
                              np.ones_like(ids_np, np.int32), new_tokens,
                              stop="eos")
    ours_gen = toks[0, :n[0]].tolist()
    results.append(PromptParity(i, max_abs, max_abs / scale, resid_rel,
                                ours_gen, theirs_gen))
  return results


def main(argv):
  del argv
  from absl import flags

  import jax

  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax is chatty
  F = flags.FLAGS
  jax.config.update("jax_default_matmul_precision", "highest")
  import icl_jax

  t0 = time.perf_counter()
  lm = icl_jax.load(F.model, dtype="float32")
  ref = load_reference(F.model)
  prompts = PARITY_PROMPTS[:F.num_prompts]
  results = compare(lm, ref, prompts, F.new_tokens)
  worst_rel = max(r.max_rel for r in results)
  worst_abs = max(r.max_abs for r in results)
  n_match = sum(r.greedy_match for r in results)
  print(f"model {F.model} ({lm.config.family}, {lm.config.n_layers} layers), "
        f"{len(results)} prompts, reference transformers eager fp32")
  print(f"{'prompt':>6} {'max|dlogit|':>12} {'rel':>10} {'max resid rel':>14}"
        "  greedy")
  for r in results:
    print(f"{r.prompt_index:>6} {r.max_abs:12.3e} {r.max_rel:10.3e} "
          f"{max(r.resid_rel):14.3e}  {'same' if r.greedy_match else 'DIFF'}")
  per_layer = np.max([r.resid_rel for r in results], axis=0)
  print("per-layer residual rel. difference (max over prompts); index L is "
        "after the final norm:")
  print("  " + " ".join(f"{i}:{v:.1e}" for i, v in enumerate(per_layer)))
  print(f"max abs logit diff {worst_abs:.3e}, max rel {worst_rel:.3e} "
        f"(tol {F.tol:.0e}); greedy {n_match}/{len(results)} identical; "
        f"{time.perf_counter() - t0:.0f}s")
  ok = worst_rel <= F.tol and n_match == len(results)
  print("PASS" if ok else "FAIL")
  return 0 if ok else 1


if __name__ == "__main__":
  from absl import app, flags

  flags.DEFINE_string("model", "gemma3-270m",
                      "embedded name, .gguf file or HF checkpoint directory")
  flags.DEFINE_float("tol", 1e-4, "max logit diff relative to max |logit|")
  flags.DEFINE_integer("num_prompts", len(PARITY_PROMPTS), "prompts to check")
  flags.DEFINE_integer("new_tokens", 8, "greedy tokens to compare")
  app.run(main)
