"""The embedded models equal transformers' forward on 20 five-shot prompts.

Slow (loads the GGUFs twice: ours via the orbax cache, the reference via
transformers' GGUF dequantizer); runs in CI.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import icl_jax
from icl_jax.convert.parity import PARITY_PROMPTS, compare, load_reference

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["gemma3-270m", "smollm2-135m",
                                  "qwen2.5-0.5b"])
def test_embedded_model_parity(name):
  lm = icl_jax.load(name)
  ref = load_reference(name)
  assert len(PARITY_PROMPTS) == 20
  results = compare(lm, ref, PARITY_PROMPTS, new_tokens=8)
  worst = max(r.max_rel for r in results)
  assert worst < 1e-4, f"{name}: max relative logit difference {worst:.2e}"
  for r in results:
    assert max(r.resid_rel) < 1e-4, (name, r.prompt_index, r.resid_rel)
    assert r.greedy_match, (name, r.prompt_index, r.ours, r.theirs)
    # 8 tokens, unless both stopped at end of sequence.
    assert len(r.ours) == 8 or r.ours[-1] in lm.config.eos_token_ids, r.ours


def test_parity_cli_exit_code():
  ok = subprocess.run(
      [sys.executable, "-m", "icl_jax.convert.parity", "--model=smollm2-135m",
       "--num_prompts=2", "--new_tokens=4"], capture_output=True, text=True)
  assert ok.returncode == 0, ok.stdout + ok.stderr
  assert "PASS" in ok.stdout
  # An impossible tolerance must fail with a non-zero exit code.
  bad = subprocess.run(
      [sys.executable, "-m", "icl_jax.convert.parity", "--model=smollm2-135m",
       "--num_prompts=1", "--new_tokens=2", "--tol=1e-12"],
      capture_output=True, text=True)
  assert bad.returncode == 1 and "FAIL" in bad.stdout
