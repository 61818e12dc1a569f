"""The report's names for experiments, from the rows' own `experiment`
field: the study id, title and protocol sections of every value the
scripts write (`EXPERIMENT` / `experiment=` in icl_jax/studies and
experiments/). A name not in these tables is rendered generically under
its own name; nothing is guessed from the spelling of a name.
"""

from __future__ import annotations

import re

MULTI = ("all_demo", "output_only")

# (experiment name, study id, title, protocol sections)
KNOWN = (
    ("baseline", "exp1", "Baseline ICL accuracy", "8.1, 9.1"),
    ("main", "main", "Main job: multi- vs single-position transfer, every "
     "layer", "8.8, 8.3-8.5, 11.1.4"),
    ("multi_position", "exp8", "Multi-position transplant", "8.8, 9.2"),
    ("proper_stats", "exp23", "N=50 re-run with confidence intervals",
     "8.18, 9.3"),
    ("controls", "exp27", "Controls", "8.19, 9.5"),
    ("pair_matrix", "exp29", "The 56-pair transfer matrix", "8.21, 9.7"),
    ("source_demo_count", "exp30", "Fewer source demos", "8.22, 9.8"),
    ("output_positions", "exp31", "How many output positions", "8.23, 9.8"),
    ("sentiment_variants", "exp32", "Sentiment label variants", "8.24"),
    ("variable_length", "exp33", "Variable-length tasks", "8.25"),
    ("ontology", "exp6", "Task ontology", "8.6"),
    ("template_similarity", "exp19", "Surface template similarity", "8.17"),
    ("tokenization", "exp28", "Tokenization analysis", "8.20"),
)
MAIN_PARTS = ("main_prefill", "main_single_d2")
# Experiments rendered after KNOWN: (exact `experiment` value, study id,
# title), in the order their sections appear among equal study ids.
STUDY_IDS = (
    ("demo_ablation_probe", "exp14", "Demo-count ablation, part C "
     "(probe accuracy by demo count)"),
    ("localization", "exp2", "Probing (localization)"),
    ("query_transplant", "exp9", "Query-position transplant"),
    ("transplant", "exp3", "Single-position transplant"),
    ("interpolation", "exp4", "Interpolation / vector arithmetic"),
    ("layer_sweep", "exp5", "Single-position layer sweep"),
    ("trajectory", "exp7", "Trajectory"),
    ("demo_zeroing", "exp10", "'Attention knockout' (demo zeroing)"),
    ("noise_tracing", "exp11", "Noise causal tracing"),
    ("layer_skip", "exp12", "Layer skipping"),
    ("instance_analysis", "exp13", "Instance-level transfer"),
    ("demo_ablation", "exp14", "Demo-count ablation"),
    ("cross_format", "exp15", "Cross-format control"),
    ("task_decodability", "td", "Task decodability (Han et al.)"),
    ("task_vectors", "tv", "Task vectors (Han et al.)"),
    ("han_td", "td", "Task decodability on Han et al.'s own tasks"),
    ("han_task_vectors", "tv", "Task vectors on Han et al.'s own tasks"),
    ("han_finetune", "ft", "Early- vs late-layer finetuning (Han et al., "
     "Table 1)"),
    ("head_map", "heads", "Head x layer map of multi-position transfer "
     "(issue 19)"),
    ("head_map_aie", "heads", "Average indirect effect of each head (Todd "
     "et al. 2024)"),
)
_BY_NAME = {name: (sid, title) for name, sid, title in STUDY_IDS}
STUDY_EXPERIMENTS = (
    ("exp1", "baseline"), ("exp2", "probing"), ("exp3", "single-position "
    "transplant"), ("exp4", "interpolation"), ("exp5", "single-position "
    "layer sweep"), ("exp6", "ontology"), ("exp7", "trajectory"),
    ("exp8", "multi-position"), ("exp9", "query transplant"),
    ("exp10", "knockout"), ("exp11", "noise"), ("exp12", "layer skip"),
    ("exp13", "instance-level"), ("exp14", "demo count"),
    ("exp15", "cross-format"), ("exp19", "template similarity"),
    ("exp23", "N=50 CIs"), ("exp27", "controls"), ("exp28", "tokenization"),
    ("exp29", "56 pairs"), ("exp30", "source demos"),
    ("exp31", "output positions"), ("exp32", "sentiment variants"),
    ("exp33", "variable length"))


def study_id(name: str) -> tuple[str | None, str | None]:
  """(study id, title) of an `experiment` value of STUDY_IDS; (None, None)
  for any other name (rendered generically under that name)."""
  return _BY_NAME.get(name, (None, None))


def section_key(name: str) -> tuple:
  """Sort key of an experiment's section after KNOWN: its study number
  (ids without one -- td, tv, ft -- and names outside STUDY_IDS last), the
  order of STUDY_IDS, the name."""
  sid, _ = study_id(name)
  order = [s for _, s, _ in STUDY_IDS]
  return (int(re.sub(r"\D", "", sid or "") or 99),
          (order.index(sid) if sid in order else len(order), name))
