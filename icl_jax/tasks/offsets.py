"""Token ids and character offsets of a prompt, from any HF tokenizer.

Fast tokenizers give offsets directly (``return_offsets_mapping``). For
tokenizers without them, offsets are recovered by incremental decoding: the
end of token i is ``len(decode(ids[:i+1]))`` over the non-special tokens,
which must reproduce the prompt text.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Encoding:
  ids: np.ndarray  # int32 [T]
  starts: np.ndarray  # int32 [T]; special tokens: 0
  ends: np.ndarray  # int32 [T]
  special: np.ndarray  # bool [T]: added by the tokenizer (BOS, ...)


def _has_offsets(tokenizer) -> bool:
  return bool(getattr(tokenizer, "is_fast", False))


def encode(tokenizer, text: str, use_offsets: bool | None = None) -> Encoding:
  """Tokenizes ``text`` with ``add_special_tokens=True`` and locates tokens.

  Args:
    tokenizer: a Hugging Face tokenizer.
    text: the prompt.
    use_offsets: force (True) or avoid (False) ``return_offsets_mapping``;
      default: use it when the tokenizer is a fast one.
  """
  if use_offsets is None:
    use_offsets = _has_offsets(tokenizer)
  enc = tokenizer(
      text, add_special_tokens=True, return_special_tokens_mask=True,
      return_offsets_mapping=bool(use_offsets),
  )
  ids = np.asarray(enc["input_ids"], dtype=np.int32)
  special = np.asarray(enc["special_tokens_mask"], dtype=bool)
  if use_offsets:
    offs = np.asarray(enc["offset_mapping"], dtype=np.int32).reshape(-1, 2)
    starts, ends = offs[:, 0].copy(), offs[:, 1].copy()
    starts[special] = 0
    ends[special] = 0
  else:
    starts, ends = _offsets_by_decoding(tokenizer, ids, special, text)
  return Encoding(ids=ids, starts=starts, ends=ends, special=special)


def _offsets_by_decoding(tokenizer, ids, special, text):
  """Offsets from decoding growing prefixes of the non-special tokens."""
  starts = np.zeros(len(ids), dtype=np.int32)
  ends = np.zeros(len(ids), dtype=np.int32)
  plain = [int(t) for t, s in zip(ids, special) if not s]
  full = tokenizer.decode(plain, skip_special_tokens=True)
  if full != text:
    raise ValueError(
        "cannot recover token offsets: decoding the tokens gives "
        f"{full!r}, not the prompt text; use a fast tokenizer"
    )
  prev, j = 0, 0
  for i, is_special in enumerate(special):
    if is_special:
      continue
    j += 1
    piece = tokenizer.decode(plain[:j], skip_special_tokens=True)
    # A prefix that ends inside a multi-byte character does not decode to a
    # prefix of the text; that token gets zero width at ``prev``.
    end = len(piece) if text.startswith(piece) else prev
    starts[i], ends[i] = prev, max(end, prev)
    prev = ends[i]
  return starts, ends
