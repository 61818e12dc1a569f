"""Aligned token layout: a role record for every token of a prompt.

``token_layout(tokenizer, spec)`` tokenizes ``spec.text`` with the
tokenizer's own special-token rule (``add_special_tokens=True``: BOS for
Gemma/Llama, none for SmolLM2/Qwen) and assigns each token to a prompt part
using real character offsets (``return_offsets_mapping`` on fast tokenizers;
otherwise offsets are recovered by incremental decoding).

Token record (``TokenRecord``): ``segment`` in {"demo", "query", "special"},
``demo`` (demo index or -1), ``role`` (a ``prompts`` span role, or "bos" /
"special" for added tokens), ``role_index`` (0-based index of the token
within its (demo, role) group), character ``start``/``end``, and ``mixed``
(True when the token's characters cover more than one part).

Assignment rule: a token belongs to the part that contains its first
non-whitespace character (its first character if it is all whitespace). So
" APPLE" (space + value) is an ``output_value`` token, a lone "▁" before a
digit is ``output_value`` token 0, and a merged "\\n\\n" is one
``demo_separator`` token.

Named position sets (``layout.mask(name)``, bool ``[T]``):

  all_demo        input-line and output-line tokens of every demo (label,
                  colon, value; no newlines/separators) -- what the study's
                  all_demo intends
  demo_region     every demo token, separators included
  input_only      input_label + input_colon + input_value of every demo
  input_values    input_value tokens
  output_only     output_value tokens (the demo answers)
  answer_tokens   alias of output_only
  output_line     output_label + output_colon + output_value
  labels          input/output labels and colons of the demos
  separators      newline + demo_separator tokens of the demos
  last_demo       input line + output line of the final demo
  last_demo_answer_token   final output_value token of the last demo
  last_demo_separator      demo_separator tokens after the last demo (what
                  the study's "last_demo_token" really is)
  query           every query token
  query_value     the query input's tokens
  first_query_token        first query_value token
  final_token     the last token of the sequence (predicts the answer)
  bos             added special tokens
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import numpy as np

from icl_jax.tasks import offsets
from icl_jax.tasks.prompts import PromptSpec

_INPUT_LINE = ("input_label", "input_colon", "input_value")
_OUTPUT_LINE = ("output_label", "output_colon", "output_value")
_LABELS = ("input_label", "input_colon", "output_label", "output_colon")
_SEPARATORS = ("newline", "demo_separator")


@dataclasses.dataclass(frozen=True)
class TokenRecord:
  index: int
  token_id: int
  segment: str  # "demo" | "query" | "special"
  demo: int  # demo index, -1 outside demos
  role: str
  role_index: int
  start: int
  end: int
  mixed: bool


class UnknownPositionSetError(KeyError):

  def __str__(self) -> str:
    return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class TokenLayout:
  """Token ids of a prompt plus one ``TokenRecord`` per token."""

  spec: PromptSpec
  token_ids: np.ndarray  # int32 [T]
  records: tuple[TokenRecord, ...]

  def __len__(self) -> int:
    return len(self.records)

  @property
  def n_demos(self) -> int:
    return self.spec.n_demos

  # -- low-level selections -----------------------------------------------
  def role_mask(
      self, roles: Iterable[str], demos: Iterable[int] | None = None
  ) -> np.ndarray:
    """bool [T]: tokens whose role is in ``roles`` (and demo in ``demos``)."""
    roles = set(roles)
    if demos is not None:
      demos = set(demos)
      for d in demos:
        self._check_demo(d)
    return np.array(
        [r.role in roles and (demos is None or r.demo in demos)
         for r in self.records],
        dtype=bool,
    )

  def indices(self, mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(mask).astype(np.int32)

  def text_of(self, mask: np.ndarray) -> str:
    """Prompt text from the first to the last selected token (by offsets)."""
    idx = self.indices(mask)
    if idx.size == 0:
      return ""
    recs = [self.records[i] for i in idx]
    return self.spec.text[min(r.start for r in recs):max(r.end for r in recs)]

  def _check_demo(self, demo: int) -> None:
    if not 0 <= demo < self.n_demos:
      raise ValueError(
          f"demo {demo} does not occur in the prompt "
          f"(it has {self.n_demos} demos)"
      )

  # -- named position sets --------------------------------------------------
  def mask(self, name: str, demo: int | None = None) -> np.ndarray:
    """bool [T] for a named position set, optionally restricted to a demo."""
    if name not in POSITION_SETS:
      raise UnknownPositionSetError(
          f"unknown position set {name!r}; known: {', '.join(POSITION_SETS)}"
      )
    m = POSITION_SETS[name](self)
    if demo is not None:
      self._check_demo(demo)
      m = m & np.array([r.demo == demo for r in self.records], dtype=bool)
    return m

  def group(self, demo: int, role: str) -> np.ndarray:
    """int32 token indices of one (demo, role) group, in order."""
    self._check_demo(demo)
    return self.indices(self.role_mask([role], [demo]))

  def table(self, tokenizer=None) -> str:
    """A human-readable table of the records (for debugging)."""
    rows = []
    for r in self.records:
      piece = repr(self.spec.text[r.start:r.end])
      if tokenizer is not None:
        piece = repr(tokenizer.convert_ids_to_tokens(int(r.token_id)))
      rows.append(
          f"{r.index:4d} {piece:>14s} {r.segment:7s} {r.demo:3d} "
          f"{r.role:20s} {r.role_index}{' mixed' if r.mixed else ''}"
      )
    return "\n".join(rows)


def _demo_tokens(layout: TokenLayout) -> np.ndarray:
  return np.array([r.segment == "demo" for r in layout.records], dtype=bool)


def _last_demo(layout: TokenLayout, roles) -> np.ndarray:
  if layout.n_demos == 0:
    return np.zeros(len(layout), dtype=bool)
  return layout.role_mask(roles, [layout.n_demos - 1])


def _single(layout: TokenLayout, mask: np.ndarray, which: int) -> np.ndarray:
  out = np.zeros(len(layout), dtype=bool)
  idx = np.flatnonzero(mask)
  if idx.size:
    out[idx[which]] = True
  return out


def _final_token(layout: TokenLayout) -> np.ndarray:
  out = np.zeros(len(layout), dtype=bool)
  out[-1] = True
  return out


POSITION_SETS = {
    "all_demo": lambda lay: lay.role_mask(_INPUT_LINE + _OUTPUT_LINE),
    "demo_region": _demo_tokens,
    "input_only": lambda lay: lay.role_mask(_INPUT_LINE),
    "input_values": lambda lay: lay.role_mask(["input_value"]),
    "output_only": lambda lay: lay.role_mask(["output_value"]),
    "answer_tokens": lambda lay: lay.role_mask(["output_value"]),
    "output_line": lambda lay: lay.role_mask(_OUTPUT_LINE),
    "labels": lambda lay: lay.role_mask(_LABELS),
    "separators": lambda lay: lay.role_mask(_SEPARATORS),
    "last_demo": lambda lay: _last_demo(lay, _INPUT_LINE + _OUTPUT_LINE),
    "last_demo_answer_token": lambda lay: _single(
        lay, _last_demo(lay, ["output_value"]), -1),
    "last_demo_separator": lambda lay: _last_demo(lay, ["demo_separator"]),
    "query": lambda lay: np.array(
        [r.segment == "query" for r in lay.records], dtype=bool),
    "query_value": lambda lay: lay.role_mask(["query_value"]),
    "first_query_token": lambda lay: _single(
        lay, lay.role_mask(["query_value"]), 0),
    "final_token": _final_token,
    "bos": lambda lay: lay.role_mask(["bos", "special"]),
}


def token_layout(
    tokenizer, spec: PromptSpec, use_offsets: bool | None = None
) -> TokenLayout:
  """Tokenizes ``spec.text`` and assigns every token a role record."""
  enc = offsets.encode(tokenizer, spec.text, use_offsets=use_offsets)
  text = spec.text
  # span index of every character; [len(text)]
  owner = np.full(len(text), -1, dtype=np.int32)
  for si, s in enumerate(spec.spans):
    owner[s.start:s.end] = si
  bos_id = getattr(tokenizer, "bos_token_id", None)
  counts: dict[tuple[int, str], int] = {}
  records = []
  for i, tid in enumerate(enc.ids):
    s, e = int(enc.starts[i]), int(enc.ends[i])
    if enc.special[i]:
      role = "bos" if bos_id is not None and int(tid) == bos_id else "special"
      key = (-1, role)
      records.append(TokenRecord(
          i, int(tid), "special", -1, role, counts.get(key, 0), s, e, False))
      counts[key] = counts.get(key, 0) + 1
      continue
    first = s
    for c in range(s, e):
      if not text[c].isspace():
        first = c
        break
    first = min(first, len(text) - 1)
    span = spec.spans[owner[first]]
    mixed = len(set(owner[s:e].tolist())) > 1
    demo = -1 if span.demo is None else span.demo
    key = (demo, span.role)
    records.append(TokenRecord(
        index=i, token_id=int(tid),
        segment="query" if span.demo is None else "demo", demo=demo,
        role=span.role, role_index=counts.get(key, 0), start=s, end=e,
        mixed=mixed,
    ))
    counts[key] = counts.get(key, 0) + 1
  return TokenLayout(spec=spec, token_ids=enc.ids, records=tuple(records))
