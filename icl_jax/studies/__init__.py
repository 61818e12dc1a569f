"""The protocol layer: tasks, modes and positions turned into patch cells,
scored result rows and resumable runs.

Everything the study's experiments share lives here, above the generic
engine (`icl_jax.interventions`, which knows no task, mode or result file):

  modes and layers   `study` (flag parsing and validation: layers, modes,
                     pairs, tasks), `modes.MODE_SPECS`, `layers`
  episode setups     `setups.setup_pairs`
  position maps      `positions` (faithful and aligned)
  cells              `plans.Plan` -> `plans.plans_to_cells` (the one cell
                     builder; `plans.transfer_job` for source activations)
  scoring and rows   `scoring` (task, prompt-file and mixed scorers),
                     `plans.cell_row` (the one transfer/preserve row
                     builder), `accuracy.accuracy_rows` (and the
                     seed helpers)
  runs               `study.open_study` / `run.Study` (results dir, resume,
                     progress, summary), `plans.run_jobs`
  studies            `transfer`, `single_position`, `ablation` (+
                     `ablation_plans`), `controls`, `sweep` with
                     `prompt_files` (user prompt files), and one module per
                     experiment script with more than flags: `baseline`,
                     `localization`, `trajectory`, `task_decodability`,
                     `task_vectors`, `ontology`, `tokenization`,
                     `template_similarity`, `output_positions`,
                     `source_demo_count`, `sentiment_variants`,
                     `variable_length`, `pair_matrix`, `proper_stats`,
                     `main_job`
"""
