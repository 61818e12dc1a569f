r"""Quick-start demo on the embedded default model.

    python -m experiments.demo [--model=gemma3-270m]

Loads the model (converted once, then from the orbax cache), runs a 5-shot
uppercase prompt through the jit-compiled greedy decoder, and prints the
answer and the shapes of the residual stream it exposes.
"""

from __future__ import annotations

from absl import app, flags

from icl_jax.convert.embedded import MODEL_FLAG_HELP

flags.DEFINE_string("model", "gemma3-270m", MODEL_FLAG_HELP)
flags.DEFINE_string("query", "honey", "query word")
F = flags.FLAGS


def main(argv):
  del argv
  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.WARNING)
  import icl_jax
  from icl_jax.tasks import build_prompt, get_task

  lm = icl_jax.load(F.model)
  print(f"loaded {F.model}: {lm.config.family}, {lm.config.n_layers} layers, "
        f"d_model {lm.config.d_model} ({lm.load_info['source']}, "
        f"{lm.load_info['seconds']:.1f}s)")
  prompt = build_prompt(get_task("uppercase").generate_demos(5), F.query).text
  print("prompt:\n" + prompt)
  answer = lm.generate([prompt], max_new_tokens=10)[0]
  print(f"answer: {answer.strip().splitlines()[0] if answer.strip() else ''!r}"
        f"   (raw continuation {answer!r})")
  ids, mask, _ = lm.encode([prompt])
  out = lm(ids, mask, return_residuals=True, logits="last")
  print(f"tokens: {ids.shape[1]}; last-position logits {tuple(out.logits.shape)}"
        f"; residuals {tuple(out.residuals.shape)} = [n_layers+1, batch, seq, "
        "d_model] (index 0: embedding output, index L+1: block L's output)")


if __name__ == "__main__":
  app.run(main)
