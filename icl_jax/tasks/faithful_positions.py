"""The study's own position finders, reproduced as run (protocol section 5).

All functions return *absolute* token indices meant to be applied to the
BOS-prefixed (``add_special_tokens=True``) token sequence of a prompt --
exactly what the original code did, drift included. Indices can exceed the
length of another prompt's sequence; the original skips those
(``skip_out_of_range``).

* ``line_positions`` (section 5.2; exp8/23/27/29-33): lines of
  ``prompt.strip()`` tokenized in isolation, counting from 0 without BOS and
  one "\\n" token after every line (also the blank one). Net drift vs. the
  real tokens of demo k: k-1 when the tokenizer adds BOS and merges "\\n\\n"
  (Llama-3, Gemma); 0 without BOS and without the merge (SmolLM2).
* ``get_position_index`` (section 5.1; exp2-5/7/9/11/14): character offset
  -> first token whose cumulative individually-decoded length exceeds it.
* ``answer_token_positions`` (section 5.3; exp13/15): per demo, the last m
  tokens of the prefix that ends with the demo's output line + "\\n", where
  m = len(tokens(" " + value)).
"""

from __future__ import annotations

from typing import Iterable

POSITION_TYPES = (
    "last_demo_token", "separator_after_demo", "first_query_token",
)
LINE_CONDITIONS = ("all_demo", "input_only", "output_only", "last_demo")


def _n_tokens(tokenizer, text: str) -> int:
  return len(tokenizer.encode(text, add_special_tokens=False))


def line_spans(tokenizer, prompt: str) -> list[dict[str, list[int]]]:
  """Per demo: {"input": [...], "output": [...]} computed line indices."""
  lines = prompt.strip().split("\n")
  newline = _n_tokens(tokenizer, "\n")
  demos: list[dict[str, list[int]]] = []
  pos = 0
  for i, line in enumerate(lines):
    n = _n_tokens(tokenizer, line)
    if i >= len(lines) - 2:  # the query's two lines
      break
    if line.startswith("Input:"):
      demos.append({"input": list(range(pos, pos + n)), "output": []})
    elif line.startswith("Output:") and demos:
      demos[-1]["output"] = list(range(pos, pos + n))
    pos += n + newline
  return demos


def line_positions(
    tokenizer, prompt: str, n_demos: int = 5
) -> dict[str, list[int]]:
  """exp8's ``find_demo_token_positions`` (the four line-based conditions).

  ``last_demo`` follows the original's rule: the input line of demo
  ``n_demos - 1`` and every output line from there on (empty if the prompt
  has fewer than ``n_demos`` demos).
  """
  out = {c: [] for c in LINE_CONDITIONS}
  for k, d in enumerate(line_spans(tokenizer, prompt)):
    out["all_demo"] += d["input"] + d["output"]
    out["input_only"] += d["input"]
    out["output_only"] += d["output"]
    if k >= n_demos - 1:
      out["last_demo"] += (d["input"] if k == n_demos - 1 else []) + d["output"]
  return out


def get_position_index(tokenizer, prompt: str, position_type: str) -> int:
  """``src/extraction.py:get_position_index`` (uses BOS-inclusive decoding)."""
  if position_type not in POSITION_TYPES:
    raise ValueError(
        f"unknown position type {position_type!r}; known: {POSITION_TYPES}"
    )
  ids = tokenizer.encode(prompt, add_special_tokens=True)
  full = tokenizer.decode(ids)
  if position_type == "last_demo_token":
    char = full.rfind("\nInput:") - 1
  elif position_type == "separator_after_demo":
    char = full.rfind("\nInput:")
  else:
    char = full.rfind("Input: ") + len("Input: ")
  total = 0
  for i, tid in enumerate(ids):
    total += len(tokenizer.decode([tid]))
    if total > char:
      return i
  return len(ids) - 1


def answer_token_positions(tokenizer, prompt: str) -> list[list[int]]:
  """Section 5.3: per-demo answer-token index ranges (exp13/exp15)."""
  lines = prompt.strip().split("\n")
  text, out = "", []
  for i, line in enumerate(lines):
    text += line + "\n"
    if line.startswith("Output:") and i != len(lines) - 1:
      end = _n_tokens(tokenizer, text)
      value = line[len("Output:"):].strip()
      m = _n_tokens(tokenizer, " " + value)
      out.append(list(range(end - m, end)))
  return out


def faithful_positions(
    tokenizer, prompt_text: str, n_demos: int = 5
) -> dict[str, list[int]]:
  """Every faithful position set of a prompt, as absolute index lists.

  Keys: all_demo, input_only, output_only, last_demo (section 5.2);
  input_line_{k}, output_line_{k} (per demo, section 5.2; exp31);
  last_demo_token, separator_after_demo, first_query_token (section 5.1,
  one index each); answer_tokens and answer_tokens_{k} (section 5.3).
  """
  out = line_positions(tokenizer, prompt_text, n_demos=n_demos)
  for k, d in enumerate(line_spans(tokenizer, prompt_text)):
    out[f"input_line_{k}"] = d["input"]
    out[f"output_line_{k}"] = d["output"]
  for t in POSITION_TYPES:
    out[t] = [get_position_index(tokenizer, prompt_text, t)]
  answers = answer_token_positions(tokenizer, prompt_text)
  out["answer_tokens"] = [i for a in answers for i in a]
  for k, a in enumerate(answers):
    out[f"answer_tokens_{k}"] = a
  return out


def skip_out_of_range(indices: Iterable[int], length: int) -> list[int]:
  """The original's rule: indices >= the target length are not patched."""
  return [i for i in indices if 0 <= i < length]
