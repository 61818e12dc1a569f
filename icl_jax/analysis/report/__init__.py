"""REPORT.md from result directories: our numbers beside the original's.

`build_report(roots)` reads every `<root>/**/results.jsonl` (one results
directory per experiment, DESIGN.md rows; any number of roots, e.g. one per
model), groups rows by their `experiment` field and renders:

  0. the summary table (`summary`): every headline claim, the original's
     number, ours per model and mode with an interval that respects prompt
     reuse, N and pairs, and a verdict from one rule (`verdicts`);
  1. what was run (models, experiments, "not run" for the study's others);
  2. the three questions, answered from the data (no hard-coded numbers):
     does multi-position transfer exist in faithful mode, in aligned mode,
     and at which depth fraction; is single-position transfer zero under a
     like-for-like decoder; which headline numbers reproduce (the summary);
     then each model beside the original's closest model at the same
     relative depth (`closest`);
  3. one section per experiment: our numbers (both modes, every model)
     beside the original's (`reference.py`, loading
     `report/reference_numbers.json`), plots, and where the original's
     artifacts (protocol section 11) explain a difference -- computed where
     the rows allow (scorer artifacts: faithful vs strict scorer on the same
     outputs; position artifacts: faithful vs aligned, query overwrites from
     the tokenization analysis; decoder: D2 vs prefill);
  4. the list of the original's artifacts;
  5. an appendix: per-pair exp8 grids in the original's format (`grids`)
     and the per-pair comparison with the closest original model.

Experiments are named from the rows' own `experiment` field (`names`);
those without a specific renderer get a generic table (mean rates by
mode/condition x layer, or the rows' numeric fields).

Modules: `data` (loading rows), `verdicts` (the verdict rules), `names`
(experiment names -> study ids), `markdown` (rendering helpers),
`estimates` (pooled rates and the held-out best layer), `questions`
(questions 1-2), `headlines` and `summary` (the summary table),
`closest` and `grids` (side by side, appendix), `transfer`, `accuracy`,
`similarity`, `generic` and `snippets` (the per-experiment sections),
`artifacts`, `inventory`, `build` (`build_report`).

The verdict rule and its constants are in `verdicts` (its docstring and
`rule_text`, which REPORT.md prints above the summary table).
"""

from icl_jax.analysis.report.build import build_report
from icl_jax.analysis.report.data import EXTRA_KEYS, Data
from icl_jax.analysis.report.names import KNOWN, study_id

__all__ = ["build_report", "Data", "EXTRA_KEYS", "KNOWN", "study_id"]
