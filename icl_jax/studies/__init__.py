"""The protocol layer: tasks, modes and positions turned into patch cells,
scored result rows and resumable runs.

Everything the study's experiments share lives here, above the generic
engine (`icl_jax.interventions`, which knows no task, mode or result file):

  modes and layers   `study` (flag parsing and validation: layers, modes,
                     pairs, tasks), `accuracy.MODE_SPECS`
  episode setups     `transfer.setup_pairs` / `plans.make_setups`
  position maps      `plans` (faithful and aligned), `transfer.position_sets`
  scoring and rows   `transfer.score_rows`, `plans.cell_row`,
                     `accuracy.accuracy_rows`
  runs               `study.open_study` / `accuracy.Study` (results dir,
                     resume, progress, summary)
  studies            `single_position`, `ablation`, `controls`,
                     `prompt_files` (user prompt files)
"""
