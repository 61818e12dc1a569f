"""Prompt templates with character spans for every part.

The study's format (protocol section 2)::

    Input: x1\\nOutput: y1\\n\\nInput: x2 ... \\n\\nInput: q\\nOutput:

i.e. ``"\\n".join`` of the lines "Input: x", "Output: y", "" per demo, then
"Input: q", "Output:". A ``PromptFormat`` generalises it (e.g. ``x -> y``);
``build_prompt`` returns the text plus a ``Span`` for every part.

Span roles (demo k = 0-based demo index; ``demo=None`` for the query):

  demo parts:  input_label "Input", input_colon ":", input_value " apple",
               newline "\\n", output_label "Output", output_colon ":",
               output_value " APPLE", demo_separator "\\n\\n"
  query parts: query_label, query_colon, query_value " honey",
               query_newline, final_output_label, final_output_colon

Value spans *include* the space in front of the value (``input_space`` /
``output_space``), because BPE and SentencePiece tokenizers merge that space
into the value's first token. Parts whose format string is empty are
omitted. BOS is not part of the text: it comes from the tokenizer.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

DEMO_ROLES: tuple[str, ...] = (
    "input_label", "input_colon", "input_value", "newline", "output_label",
    "output_colon", "output_value", "demo_separator",
)
QUERY_ROLES: tuple[str, ...] = (
    "query_label", "query_colon", "query_value", "query_newline",
    "final_output_label", "final_output_colon",
)


@dataclasses.dataclass(frozen=True)
class PromptFormat:
  """Strings that make up a demo block and the query.

  A demo is ``input_label input_colon input_space x newline output_label
  output_colon output_space y demo_separator``; the query is the same up to
  ``output_colon`` (no trailing space).
  """

  input_label: str = "Input"
  input_colon: str = ":"
  input_space: str = " "
  newline: str = "\n"
  output_label: str = "Output"
  output_colon: str = ":"
  output_space: str = " "
  demo_separator: str = "\n\n"
  name: str = "study"


STUDY_FORMAT = PromptFormat()
# "apple -> APPLE\nbrain -> BRAIN\nhoney ->"
ARROW_FORMAT = PromptFormat(
    input_label="", input_colon="", input_space="", newline=" ",
    output_label="->", output_colon="", output_space=" ", demo_separator="\n",
    name="arrow",
)


@dataclasses.dataclass(frozen=True)
class Span:
  """A part of the prompt text: ``text[start:end]``."""

  role: str
  demo: int | None  # demo index, or None for the query
  start: int
  end: int
  text: str


@dataclasses.dataclass(frozen=True)
class PromptSpec:
  """A prompt's text, its parts, and what it was built from."""

  text: str
  spans: tuple[Span, ...]
  demos: tuple[tuple[str, str], ...]
  query: str
  fmt: PromptFormat = STUDY_FORMAT

  @property
  def n_demos(self) -> int:
    return len(self.demos)

  def span(self, role: str, demo: int | None = None) -> Span:
    """The span of ``role`` in demo ``demo`` (``None`` = query part)."""
    if demo is not None and not 0 <= demo < self.n_demos:
      raise ValueError(
          f"demo {demo} does not occur in the prompt "
          f"(it has {self.n_demos} demos)"
      )
    for s in self.spans:
      if s.role == role and s.demo == demo:
        return s
    where = "the query" if demo is None else f"demo {demo}"
    raise ValueError(f"no {role!r} part in {where} of this prompt")

  def find_demo(self, demo: tuple[str, str]) -> int:
    """Index of a (input, output) demo in the prompt; raises if absent."""
    try:
      return self.demos.index(tuple(demo))
    except ValueError:
      raise ValueError(
          f"demo {tuple(demo)!r} does not occur in the prompt; its demos "
          f"are {list(self.demos)!r}"
      ) from None


def build_prompt(
    demos: Sequence[tuple[str, str]],
    query: str,
    fmt: PromptFormat = STUDY_FORMAT,
) -> PromptSpec:
  """Builds the prompt text and the span of every part."""
  pieces: list[tuple[str, int | None, str]] = []
  for k, (x, y) in enumerate(demos):
    pieces += [
        ("input_label", k, fmt.input_label),
        ("input_colon", k, fmt.input_colon),
        ("input_value", k, fmt.input_space + str(x)),
        ("newline", k, fmt.newline),
        ("output_label", k, fmt.output_label),
        ("output_colon", k, fmt.output_colon),
        ("output_value", k, fmt.output_space + str(y)),
        ("demo_separator", k, fmt.demo_separator),
    ]
  pieces += [
      ("query_label", None, fmt.input_label),
      ("query_colon", None, fmt.input_colon),
      ("query_value", None, fmt.input_space + str(query)),
      ("query_newline", None, fmt.newline),
      ("final_output_label", None, fmt.output_label),
      ("final_output_colon", None, fmt.output_colon),
  ]
  spans, pos = [], 0
  for role, demo, piece in pieces:
    if piece:
      spans.append(Span(role, demo, pos, pos + len(piece), piece))
      pos += len(piece)
  text = "".join(p for _, _, p in pieces)
  return PromptSpec(
      text=text, spans=tuple(spans),
      demos=tuple((str(x), str(y)) for x, y in demos), query=str(query),
      fmt=fmt,
  )


def study_prompt_text(demos: Sequence[tuple[str, str]], query: str) -> str:
  """The original ``format_prompt``: lines joined by newlines."""
  lines = []
  for x, y in demos:
    lines += [f"Input: {x}", f"Output: {y}", ""]
  lines += [f"Input: {query}", "Output:"]
  return "\n".join(lines)


def parse_prompt(text: str, fmt: PromptFormat = STUDY_FORMAT) -> PromptSpec:
  """Recovers demos and query from a prompt written in ``fmt``.

  Raises ValueError if the text is not exactly ``build_prompt(...)`` of the
  demos and query it appears to contain.
  """
  sep = fmt.demo_separator
  blocks = text.split(sep)
  demos = []
  in_head = fmt.input_label + fmt.input_colon + fmt.input_space
  out_head = fmt.newline + fmt.output_label + fmt.output_colon
  for block in blocks:
    if not block.startswith(in_head) or out_head not in block:
      raise ValueError(f"not a {fmt.name!r}-format prompt block: {block!r}")
    x, rest = block[len(in_head):].split(out_head, 1)
    demos.append((x, rest[len(fmt.output_space):] if rest else None))
  *demo_items, (query, tail) = demos
  if tail is not None:
    raise ValueError("the prompt does not end with the final output label")
  spec = build_prompt(demo_items, query, fmt)
  if spec.text != text:
    raise ValueError(f"text is not a canonical {fmt.name!r}-format prompt")
  return spec
