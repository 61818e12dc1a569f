"""English number words (length_word and spell_out)."""

from __future__ import annotations

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve"
    " thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
)
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_word(n: int) -> str:
  """0..99 in English words; 21 -> "twenty-one" (hyphenated)."""
  if not 0 <= n <= 99:
    raise ValueError(f"number_word supports 0..99, got {n}")
  if n < 20:
    return _ONES[n]
  tens, units = divmod(n, 10)
  return _TENS[tens] if units == 0 else f"{_TENS[tens]}-{_ONES[units]}"
