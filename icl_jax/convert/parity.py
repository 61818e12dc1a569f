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
import gc
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


@dataclasses.dataclass
class OurOutputs:
  """Our side of a parity check, computed before the reference is loaded
  (so the two models never need to be in memory together)."""

  seqs: list[list[int]]
  logits: list[np.ndarray]  # fp32 [T,V] per prompt
  residuals: list[np.ndarray]  # fp32 [L+1,T,D]; index L after the final norm
  greedy: list[list[int]]
  n_layers: int
  pad_id: int


def our_outputs(lm, prompts=PARITY_PROMPTS, new_tokens: int = 8,
                token_ids=None) -> OurOutputs:
  """Logits, residuals and greedy tokens of `lm` on the parity prompts."""
  from icl_jax.models.decoder import RMSNorm

  cfg = lm.config
  final_norm = RMSNorm(cfg.norm_eps, cfg.norm_offset, lm.dtype)
  seqs = (token_ids if token_ids is not None else
          [lm.tokenizer(p, add_special_tokens=True)["input_ids"]
           for p in prompts])
  out = OurOutputs([list(s) for s in seqs], [], [], [], cfg.n_layers,
                   lm.pad_id)
  for ids in seqs:
    ids_np = np.asarray([ids], np.int32)
    o = lm(ids_np, return_residuals=True)
    res = np.array(o.residuals[:, 0], np.float32)  # [L+1,T,D], a copy
    res[-1] = np.asarray(final_norm.apply(
        {"params": {"scale": lm.params["final_norm"]["scale"]}},
        o.residuals[-1]), np.float32)[0]
    out.logits.append(np.asarray(o.logits[0], np.float32))
    out.residuals.append(res)
    # Greedy continuation: EOS stop only, as HF generate below.
    toks, n = lm.generate_ids(ids_np, np.ones_like(ids_np), new_tokens,
                              stop="eos")
    out.greedy.append(toks[0, :n[0]].tolist())
  return out


def compare_outputs(ours: OurOutputs, ref_model,
                    new_tokens: int = 8) -> list[PromptParity]:
  """Compares our outputs with transformers' prompt by prompt."""
  import torch

  results = []
  for i, ids in enumerate(ours.seqs):
    ids_t = torch.tensor([ids], dtype=torch.int64)
    with torch.no_grad():
      ref = ref_model(ids_t, output_hidden_states=True)
    theirs = ref.logits[0].double().numpy()
    mine = ours.logits[i].astype(np.float64)
    scale = np.abs(theirs).max()
    max_abs = float(np.abs(mine - theirs).max())
    resid_rel = []
    for j, h in enumerate(ref.hidden_states[:ours.n_layers + 1]):
      h = h[0].double().numpy()
      resid_rel.append(float(
          np.abs(ours.residuals[i][j].astype(np.float64) - h).max()
          / max(np.abs(h).max(), 1e-30)))
    with torch.no_grad():
      g = ref_model.generate(ids_t, max_new_tokens=new_tokens,
                             do_sample=False, pad_token_id=ours.pad_id)
    results.append(PromptParity(i, max_abs, max_abs / scale, resid_rel,
                                ours.greedy[i], g[0, len(ids):].tolist()))
  return results


def compare(lm, ref_model, prompts=PARITY_PROMPTS, new_tokens: int = 8,
            token_ids=None) -> list[PromptParity]:
  """Compares logits, residuals and greedy continuations prompt by prompt."""
  return compare_outputs(our_outputs(lm, prompts, new_tokens, token_ids),
                         ref_model, new_tokens)


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
  family, n_layers = lm.config.family, lm.config.n_layers
  ours = our_outputs(lm, PARITY_PROMPTS[:F.num_prompts], F.new_tokens)
  del lm  # the reference is loaded only after ours is freed (peak memory)
  gc.collect()
  ref = load_reference(F.model)
  results = compare_outputs(ours, ref, F.new_tokens)
  worst_rel = max(r.max_rel for r in results)
  worst_abs = max(r.max_abs for r in results)
  n_match = sum(r.greedy_match for r in results)
  print(f"model {F.model} ({family}, {n_layers} layers), "
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

  from icl_jax.convert.embedded import MODEL_FLAG_HELP

  flags.DEFINE_string("model", "gemma3-270m", MODEL_FLAG_HELP)
  flags.DEFINE_float("tol", 1e-4, "max logit diff relative to max |logit|")
  flags.DEFINE_integer("num_prompts", len(PARITY_PROMPTS), "prompts to check")
  flags.DEFINE_integer("new_tokens", 8, "greedy tokens to compare")
  app.run(main)
