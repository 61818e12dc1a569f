"""Every ```python block of README.md runs.

The blocks run in order in one namespace, like notebook cells (later
blocks use `lm` and the prompts of earlier ones). They load the embedded
Gemma 3 270M model, so the run is a slow test (still part of CI); that
each block at least parses is checked in the fast tier.
"""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
  text = README.read_text()
  return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_python_blocks_parse():
  blocks = python_blocks()
  assert len(blocks) >= 4  # Models + the three "Patching in Python" blocks
  for i, code in enumerate(blocks):
    compile(code, f"README.md python block {i}", "exec")


@pytest.mark.slow
def test_readme_python_blocks_run(capsys):
  namespace = {"__name__": "__readme__"}
  for i, code in enumerate(python_blocks()):
    try:
      exec(compile(code, f"README.md python block {i}", "exec"), namespace)
    except Exception as e:  # name the block that failed
      raise AssertionError(f"README.md python block {i} failed: {e!r}\n"
                           f"{code}") from e
    if "Patch.replace(" in code:  # the three-line patch: the source's task
      assert namespace["out"].texts[0][0].strip().startswith("HONEY")
  assert namespace["grid"].values.shape == (3, 2, 2)
  assert namespace["trace"].mean().shape == (4, 2)
