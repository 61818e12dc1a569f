"""Lean tokenizers (`icl_jax.convert.tokenizers`): a model-specific
transformers class that only sets up its Rust tokenizer is returned as a
plain `TokenizersBackend` around that same Rust tokenizer, without the
class's Python copies of the vocabulary and merges, and tokenizes exactly
as the class does.

Fast tests use tiny tokenizers; the slow one compares, for every embedded
default model, the class's own tokenizer (built from the GGUF as before the
change: GGUF -> save -> read back) with `load_tokenizer`'s on every prompt
the studies build, their offsets, and the decoding of every vocabulary id.
"""

from __future__ import annotations

import json
import random

import pytest
from transformers import AutoTokenizer
from transformers.models.gemma.tokenization_gemma import GemmaTokenizer
from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer
from transformers.tokenization_utils_tokenizers import TokenizersBackend

from icl_jax.convert import tokenizers as toks

# Odd strings on top of the study's prompts: spaces, unicode (NFC matters
# for Qwen2's normalizer), byte fallback, special tokens in text.
EXTRA_TEXTS = ("", " ", "  two  spaces ", "\n\n", "café naïve e\u0301",
               "日本語のテキスト", "Ｆｕｌｌｗｉｄｔｈ", "emoji 🙂 ok", "\t tab",
               "<bos> and <eos> in text", "<|im_start|>user\nhi<|im_end|>",
               "Input: 12345678901234567890\nOutput:")


def study_texts() -> list[str]:
  """The 20 parity prompts, every task's prompt for every pool input in
  both formats, the Han prompts (bitwise; POS when installed), and the
  answers with their leading space."""
  from icl_jax.convert.parity import PARITY_PROMPTS
  from icl_jax.tasks import ARROW_FORMAT, build_prompt, get_task, task_names
  from icl_jax.tasks import han

  texts = list(PARITY_PROMPTS) + list(EXTRA_TEXTS)
  for name in task_names():
    task = get_task(name)
    demos = task.generate_demos(min(5, len(task.demos)))
    for q in dict.fromkeys([*task.pool, *(x for x, _ in task.demos)]):
      texts.append(build_prompt(demos, q).text)
      texts.append(build_prompt(demos, q, ARROW_FORMAT).text)
    texts += [" " + y for _, y in task.demos]
  families = ["bitwise"] + (["pos"] if han.penn_available() else [])
  for fam in families:
    for t in han.family_tasks(fam):
      texts += [p for p, _ in han.prompts(fam, t, n=20, shots=4, seed=0)]
  return texts


def assert_same_tokenization(before, after, texts, name=""):
  """Identical ids, special-token masks and offsets on `texts`; identical
  decoding of every vocabulary id and of every encoded text."""
  assert toks.same_tokenizer(before, after) is None, name
  kw = dict(add_special_tokens=True, return_offsets_mapping=True,
            return_special_tokens_mask=True)
  for t in texts:
    assert before(t, **kw) == after(t, **kw), (name, t)
    assert (before.encode(t, add_special_tokens=False)
            == after.encode(t, add_special_tokens=False)), (name, t)
  ids = [[i] for i in range(len(before))]
  for skip in (False, True):
    assert (before.batch_decode(ids, skip_special_tokens=skip)
            == after.batch_decode(ids, skip_special_tokens=skip)), name
  seqs = [before(t)["input_ids"] for t in texts]
  rng = random.Random(0)
  seqs += [[rng.randrange(len(before)) for _ in range(12)] for _ in range(200)]
  for skip in (False, True):
    assert (before.batch_decode(seqs, skip_special_tokens=skip)
            == after.batch_decode(seqs, skip_special_tokens=skip)), name
  for attr in ("bos_token_id", "eos_token_id", "pad_token_id", "padding_side",
               "all_special_ids", "chat_template", "model_input_names"):
    assert getattr(before, attr) == getattr(after, attr), (name, attr)
  assert len(before) == len(after)


def _tiny_gemma():
  vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4,
           "▁": 5, "a": 6, "b": 7, "c": 8, "▁a": 9, "ab": 10, "▁ab": 11,
           "\n": 12, "<0x0A>": 13}
  merges = [("▁", "a"), ("a", "b"), ("▁a", "b")]
  return GemmaTokenizer(vocab=vocab, merges=merges)


def _tiny_qwen():
  from tokenizers.pre_tokenizers import ByteLevel

  alphabet = ByteLevel.alphabet()
  vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
  vocab["Ġa"] = len(vocab)
  vocab["<|endoftext|>"] = len(vocab)
  vocab["<|im_end|>"] = len(vocab)
  return Qwen2Tokenizer(vocab=vocab, merges=[("Ġ", "a")],
                        eos_token="<|im_end|>")


TINY_TEXTS = ("a ab", "ab\nab c", " a", "abc", "café e\u0301", "")


@pytest.mark.parametrize("make", [_tiny_gemma, _tiny_qwen])
def test_tiny_class_tokenizer_read_back_lean_and_identical(make, tmp_path):
  make().save_pretrained(str(tmp_path / "cls"))
  before = AutoTokenizer.from_pretrained(str(tmp_path / "cls"))
  assert type(before) is not TokenizersBackend
  assert hasattr(before, "_vocab")  # the copies the lean form drops
  after = toks.load_tokenizer(str(tmp_path / "cls"))
  assert type(after) is TokenizersBackend and not hasattr(after, "_vocab")
  assert_same_tokenization(before, after, TINY_TEXTS)
  # Saved and read back, the lean form stays lean and identical.
  after.save_pretrained(str(tmp_path / "lean"))
  cfg = json.loads((tmp_path / "lean" / "tokenizer_config.json").read_text())
  assert cfg["tokenizer_class"] == "TokenizersBackend"
  again = toks.read_tokenizer_dir(tmp_path / "lean")
  assert type(again) is TokenizersBackend
  assert_same_tokenization(before, again, TINY_TEXTS)


def test_padding_side_of_the_class_is_kept(tmp_path):
  _tiny_gemma().save_pretrained(str(tmp_path))
  tok = toks.load_tokenizer(str(tmp_path))
  assert tok.padding_side == "left"  # GemmaTokenizer's class setting
  batch = tok(["a", "ab ab a"], padding=True)["input_ids"]
  assert batch[0][0] == tok.pad_token_id


def test_class_with_own_methods_is_not_made_lean():
  class Custom(GemmaTokenizer):
    def _decode(self, *args, **kwargs):  # behaviour the plain class lacks
      return "x"

  tok = Custom(vocab=_tiny_gemma().get_vocab(), merges=[("a", "b")])
  assert toks.lean_tokenizer(tok) is tok


def test_a_difference_is_detected(tmp_path):
  _tiny_gemma().save_pretrained(str(tmp_path))
  a = AutoTokenizer.from_pretrained(str(tmp_path))
  b = toks.lean_tokenizer(a)
  assert toks.same_tokenizer(a, b) is None
  b.padding_side = "right"
  assert "padding_side" in toks.same_tokenizer(a, b)
  c = toks.lean_tokenizer(a)
  c.backend_tokenizer.add_tokens(["zzz"])
  assert "Rust" in toks.same_tokenizer(a, c)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gemma3-270m", "smollm2-135m",
                                  "qwen2.5-0.5b"])
def test_embedded_lean_tokenizer_identical_to_class(name, tmp_path):
  from icl_jax.convert.embedded import embedded_gguf_path

  path = embedded_gguf_path(name)
  # The class's tokenizer as every load returned it before: GGUF -> saved
  # -> read back. (Equal decoding of every id also means equal stop tables.)
  AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name
                                ).save_pretrained(str(tmp_path))
  before = AutoTokenizer.from_pretrained(str(tmp_path))
  after = toks.load_tokenizer(name)
  assert type(after) is TokenizersBackend
  assert_same_tokenization(before, after, study_texts(), name)
