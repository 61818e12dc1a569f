"""Sections of the representation and tokenization analyses: exp6 task
ontology, exp19 surface template similarity, exp28 tokenization."""

from __future__ import annotations

from icl_jax.analysis import reference as R
from icl_jax.analysis.report.artifacts import (plots_and_notes,
                                              tokenization_facts)
from icl_jax.analysis.report.data import Data
from icl_jax.analysis.report.markdown import f2, md_table, pair, short_model


def render_exp6(data: Data, rows) -> str:
  table = []
  for m in data.models(["ontology"]):
    nl = data.n_layers(m)
    for mode in ("faithful", "aligned"):
      x = sorted((r for r in rows if r["model"] == m and r["mode"] == mode),
                 key=lambda r: r["layer"])
      if not x:
        continue
      half = round(0.5 * nl) if nl else None
      pick = [r for r in x if r["layer"] == half] or x[len(x) // 2:][:1]
      best = max(x, key=lambda r: (r.get("silhouette") or -9))
      for lab, r in (("depth 0.5", pick[0]), ("max silhouette", best)):
        table.append([short_model(m), mode, r["condition"], lab,
                      f"L{r['layer']}", f2(r.get("silhouette"), 4),
                      f2(r.get("perm_p"), 3), f2(r["within"], 3),
                      f2(r["between"], 3),
                      (r.get("merge_labels") or [["-"]])[0][0]])
  table.append(["Llama-3B (original)", "faithful", "last_demo_token",
                "depth 0.5", f"L{R.EXP6_LAYER}", R.EXP6["silhouette"],
                R.EXP6["perm_p"], R.EXP6["within"], R.EXP6["between"],
                R.EXP6["merges"][0][0]])
  text = md_table(["model", "mode", "position", "which", "layer",
                   "silhouette (regimes)", "perm p", "within cos",
                   "between cos", "first merge"], table)
  text += "\n" + R.EXP6_NOTES + "\n\n"
  text += plots_and_notes(data, "ontology", [], (
      "separator_token", "fixed_demos"))
  return text


def render_exp19(data: Data, rows) -> str:
  table = []
  for r in sorted(rows, key=lambda r: (str(r.get("model")), r["mode"],
                                       str(r.get("layer")),
                                       r["condition"])):
    if r.get("r") is None:
      continue
    nl = r.get("n_layers")
    if (r["model"] != "llama-3.2-3b (original)" and nl and
        r["layer"] != round(0.3 * nl)):
      continue
    table.append([short_model(r["model"]), r["mode"], f"L{r['layer']}",
                  r["condition"], f"{r['r']:+.4f}", f"{r['p']:.4f}",
                  f"[{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}]", r["n_pairs"]])
  text = ("Pearson r over ordered pairs (shown: the original's data and our "
          "depth-0.30 layer; every layer is in results.jsonl):\n\n")
  text += md_table(["transfer from", "mode", "layer", "similarity", "r", "p",
                    "bootstrap 95% CI", "pairs"], table)
  text += (f"\nOriginal: r = {R.EXP19['r']} (p {R.EXP19['p']}, CI "
           f"{list(R.EXP19['ci'])}); the paper's activation-similarity r = "
           f"{R.EXP19['activation_r_paper']} was never computed (exp6 x "
           f"exp29 gives {R.EXP19['activation_r_recomputed']}).\n\n")
  text += plots_and_notes(data, "template_similarity", [], ("absolute_index",))
  return text


def render_exp28(data: Data, rows) -> str:
  from icl_jax.studies.tokenization import double_newline_text

  text = ""
  for m in data.models(["tokenization"]):
    facts = tokenization_facts(data, m) or {}
    tf = facts.get("tokenizer", {})
    text += (f"**{short_model(m)}**: BOS {tf.get('adds_bos')}, "
             f"{double_newline_text(tf)}; `last_demo_token` "
             f"is a {facts.get('last_demo_token_role')!r} token; faithful "
             f"output-line drift per demo {facts.get('output_line_drift_uppercase')}"
             f"; faithful all_demo overwrites target query tokens in "
             f"{facts.get('pairs_with_query_overwrite')}/"
             f"{facts.get('layout_pairs')} ordered pairs (the final, answer-"
             f"predicting token in "
             f"{facts.get('pairs_with_final_token_overwrite')}).\n\n")
    pr = [r for r in rows if r["model"] == m and
          r["condition"] == "pair_lengths"]
    if pr:
      text += md_table(
          ["pair", "prompt tokens src/tgt (no special)", "output counts "
           "match", "|mean diff|", "original lengths"],
          [[pair(r), f"{r['source_prompt_tokens']}/"
            f"{r['target_prompt_tokens']}", r["output_counts_match"],
            f2(r["mean_output_token_diff"]),
            "/".join(map(str, R.EXP28["prompt_lengths"].get(
                (r["source_task"], r["target_task"]), ("-",))))]
           for r in pr])
    cr = [r for r in rows if r["model"] == m and
          r["condition"] == "correlation" and r.get("r") is not None]
    if cr:
      text += "\n" + md_table(
          ["transfer rates", "mode", "r", "p", "pairs"],
          [[r["rates"], r["mode"], f"{r['r']:+.4f}", f"{r['p']:.4f}",
            r["n_pairs"]] for r in cr])
    text += "\n"
  text += (f"Original (Llama-3 tokenizer): r = {R.EXP28['r']} on 6 pairs, "
           "output-token counts uppercase [1,2,2,2,2], first_letter [1]*5, "
           "repeat_word [2]*5, length [2]*5.\n\n")
  text += plots_and_notes(data, "tokenization", [], (
      "positions_drift", "absolute_index"))
  return text
