"""Faithful position finders: the section 5.2 formula and its drift."""

import pytest

from icl_jax.tasks import CORE_TASKS
from icl_jax.tasks import answer_token_positions
from icl_jax.tasks import build_prompt
from icl_jax.tasks import faithful_positions
from icl_jax.tasks import get_position_index
from icl_jax.tasks import get_task
from icl_jax.tasks import line_positions
from icl_jax.tasks import skip_out_of_range
from icl_jax.tasks import task_names
from icl_jax.tasks import token_layout
from icl_jax.tasks.faithful_positions import line_spans


def _prompt(name, k=5):
  t = get_task(name)
  return build_prompt(t.generate_demos(k), t.generate_test_inputs(1)[0])


def _section_5_2(tokenizer, prompt, n_demos=5):
  """Literal transcription of the original exp8 loop (independent of ours)."""
  lines = prompt.strip().split("\n")
  out = {"all_demo": [], "input_only": [], "output_only": [], "last_demo": []}
  pos, demo_count, last_start = 0, 0, None
  for i, line in enumerate(lines):
    n = len(tokenizer.encode(line, add_special_tokens=False))
    if i >= len(lines) - 2:
      break
    if line.startswith("Input:"):
      out["all_demo"] += range(pos, pos + n)
      out["input_only"] += range(pos, pos + n)
      if demo_count == n_demos - 1:
        last_start = pos
        out["last_demo"] += range(pos, pos + n)
    elif line.startswith("Output:"):
      out["all_demo"] += range(pos, pos + n)
      out["output_only"] += range(pos, pos + n)
      if last_start is not None:
        out["last_demo"] += range(pos, pos + n)
      demo_count += 1
    pos += n
    if i < len(lines) - 1:
      pos += len(tokenizer.encode("\n", add_special_tokens=False))
  return out


@pytest.mark.parametrize("name", task_names())
def test_line_positions_equal_the_section_5_2_formula(tok, name):
  _, tokenizer = tok
  for k, n_demos in ((5, 5), (3, 5), (3, 3)):
    text = _prompt(name, k).text
    assert line_positions(tokenizer, text, n_demos) == _section_5_2(
        tokenizer, text, n_demos)


def test_gemma_uppercase_matches_the_protocol_worked_example(gemma_tok):
  # Gemma 3 tokenizes this prompt like Llama-3.2 (51 tokens with BOS,
  # answer tokens [1, 2, 2, 2, 2]), so protocol section 5.2's table applies.
  fp = faithful_positions(gemma_tok, _prompt("uppercase").text)
  assert [fp[f"input_line_{k}"] for k in range(5)] == [
      [0, 1, 2], [9, 10, 11], [19, 20, 21], [29, 30, 31], [39, 40, 41]]
  assert [fp[f"output_line_{k}"] for k in range(5)] == [
      [4, 5, 6], [13, 14, 15, 16], [23, 24, 25, 26], [33, 34, 35, 36],
      [43, 44, 45, 46]]
  counts = [len(fp[c]) for c in ("all_demo", "output_only", "input_only",
                                 "last_demo")]
  assert counts == [34, 19, 15, 7]  # protocol: Llama uppercase 34/19/15/7


def test_where_faithful_indices_land_on_gemma_uppercase(gemma_tok):
  spec = _prompt("uppercase")
  lay = token_layout(gemma_tok, spec)
  fp = faithful_positions(gemma_tok, spec.text)

  def describe(i):
    r = lay.records[i]
    piece = gemma_tok.convert_ids_to_tokens(int(lay.token_ids[i]))
    where = "query" if r.segment == "query" else (
        "bos" if r.segment == "special" else f"demo{r.demo}")
    return f"{i:3d} {piece!r:>10} {where:6s} {r.role}"

  print("\nfaithful output_only on Gemma uppercase (index, token, lands on):")
  for i in fp["output_only"]:
    print("  " + describe(i))
  hit = set(fp["all_demo"])
  intended = set(lay.indices(lay.mask("all_demo")).tolist())
  missed = sorted(intended - hit)
  print("intended all_demo tokens never patched:")
  for i in missed:
    print("  " + describe(i))
  landed = [(lay.records[i].demo, lay.records[i].role) for i in missed]
  assert landed == [
      (0, "input_value"), (0, "output_value"), (2, "input_label"),
      (2, "output_label"), (3, "input_label"), (3, "input_colon"),
      (3, "output_colon"), (4, "input_colon"), (4, "input_value"),
      (4, "output_value")]
  # " apple" and " APPLE" of demo 0 are missed; BOS and 2 query tokens hit.
  assert spec.text[lay.records[3].start:lay.records[3].end] == " apple"
  extra = sorted(hit - intended)
  assert [lay.records[i].role for i in extra] == [
      "bos", "newline", "newline", "demo_separator", "newline",
      "demo_separator", "newline", "demo_separator", "query_label",
      "query_colon"]
  # 13 of the 44 demo-region tokens are never patched (protocol 11.1.1).
  demo_region = set(lay.indices(lay.mask("demo_region")).tolist())
  assert len(demo_region) == 44 and len(demo_region - hit) == 13
  # output_only hits 7 of the 9 answer tokens; " APPLE" (7) and " FL" (42)
  # are missed, and 12 of its 19 indices are labels/newlines/query tokens.
  answers = set(lay.indices(lay.mask("output_only")).tolist())
  assert sorted(answers & set(fp["output_only"])) == [15, 16, 24, 25, 33, 34,
                                                      43]
  assert sorted(answers - set(fp["output_only"])) == [7, 42]


def _drift(tokenizer, name):
  """Per demo: computed first index - real first index (input and output)."""
  spec = _prompt(name)
  lay = token_layout(tokenizer, spec)
  drift = []
  for k, d in enumerate(line_spans(tokenizer, spec.text)):
    real_in = lay.indices(lay.role_mask(
        ["input_label", "input_colon", "input_value"], [k]))
    real_out = lay.indices(lay.role_mask(
        ["output_label", "output_colon", "output_value"], [k]))
    # Each line's tokens in isolation match the in-context tokens, so the
    # whole line is shifted by one constant.
    assert len(d["input"]) == len(real_in)
    assert len(d["output"]) == len(real_out)
    off_in = d["input"][0] - int(real_in[0])
    off_out = d["output"][0] - int(real_out[0])
    assert off_in == off_out
    drift.append(off_in)
  return drift


@pytest.mark.parametrize("name", CORE_TASKS + ("reverse", "pig_latin",
                                               "repeat_n", "spell_out"))
def test_drift_per_demo(embedded_tokenizers, name):
  # Gemma: BOS ignored (-1) and "\n\n" merged (+1 per completed demo): k-1.
  assert _drift(embedded_tokenizers["gemma3-270m"], name) == [-1, 0, 1, 2, 3]
  # SmolLM2: no BOS and "\n\n" split into two "\n": the formula is exact.
  assert _drift(embedded_tokenizers["smollm2-135m"], name) == [0, 0, 0, 0, 0]


def test_get_position_index_on_both_tokenizers(gemma_tok, smol_tok):
  spec = _prompt("uppercase")
  g = token_layout(gemma_tok, spec)
  sep = g.indices(g.mask("last_demo_separator")).tolist()
  assert sep == [44]
  # Gemma: last_demo_token IS the "\n\n" separator, not the answer token.
  assert get_position_index(gemma_tok, spec.text, "last_demo_token") == 44
  assert get_position_index(gemma_tok, spec.text, "separator_after_demo") == 44
  assert g.indices(g.mask("last_demo_answer_token")).tolist() == [43]
  assert g.indices(g.mask("first_query_token")).tolist() == [47]
  assert get_position_index(gemma_tok, spec.text, "first_query_token") == 47
  # SmolLM2: the two "\n" tokens are told apart.
  s = token_layout(smol_tok, spec)
  assert s.indices(s.mask("last_demo_separator")).tolist() == [50, 51]
  assert get_position_index(smol_tok, spec.text, "last_demo_token") == 50
  assert get_position_index(smol_tok, spec.text, "separator_after_demo") == 51
  assert get_position_index(smol_tok, spec.text, "first_query_token") == 54
  assert s.records[54].role == "query_value"
  with pytest.raises(ValueError, match="unknown position type"):
    get_position_index(gemma_tok, spec.text, "last_token")


@pytest.mark.parametrize("name", CORE_TASKS)
def test_answer_token_positions(embedded_tokenizers, name):
  spec = _prompt(name)
  g_tok = embedded_tokenizers["gemma3-270m"]
  s_tok = embedded_tokenizers["smollm2-135m"]
  g = token_layout(g_tok, spec)
  s = token_layout(s_tok, spec)
  # With BOS the two off-by-ones cancel: exactly the answer tokens.
  assert answer_token_positions(g_tok, spec.text) == [
      g.group(k, "output_value").tolist() for k in range(5)]
  # Without BOS (SmolLM2): shifted one right -- the last m-1 answer tokens
  # plus the first "\n" of the separator.
  got = answer_token_positions(s_tok, spec.text)
  for k in range(5):
    real = s.group(k, "output_value").tolist()
    assert got[k] == [i + 1 for i in real]
    assert s.records[got[k][-1]].role == "demo_separator"


def test_skip_out_of_range():
  assert skip_out_of_range([0, 5, 51, 52, 60], 52) == [0, 5, 51]


def test_linear_to_length_spills_into_the_query_on_gemma(gemma_tok):
  # Protocol 5.2: the linear_2x index set overwrites the length query --
  # on Gemma 3 every query token but the final "Output", including the final
  # ":" whose residual predicts the answer.
  src = faithful_positions(gemma_tok, _prompt("linear_2x").text)["all_demo"]
  tgt = token_layout(gemma_tok, _prompt("length"))
  patched = skip_out_of_range(src, len(tgt))
  query_hits = [tgt.records[i].role for i in patched
                if tgt.records[i].segment == "query"]
  assert query_hits == ["query_label", "query_colon", "query_value",
                        "query_newline", "final_output_colon"]
