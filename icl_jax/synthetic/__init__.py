"""The synthetic encoder-decoder emergence study (Han et al. 2024, §3.3).

A small GPT-2 trained from scratch on a mixture of sparse linear regressions;
task encoding (TD of the latent basis per layer) and task decoding (per-basis
loss) are logged over training. Spec: ``reference/han_task_vectors.md`` §2.

Public API::

  TaskConfig, SparseRegressionBatch, sample_batch, sample_balanced,
  sample_with_bases, basis_masks, interleave, x_positions, y_positions
  GPT2RegressorConfig, PRESETS, GPT2Regressor, ResidualPatch, NO_PATCH,
  RegressorOutput, SyntheticModel, init_params, apply_model, param_count
  TrainConfig, TrainResult, train, restore_checkpoint, load_config, eval_sets,
  measure_step_time, ConfigMismatchError
  per_basis_mse, td_features, knn_task_decodability,
  per_class_task_decodability, baseline_predictions,
  baseline_mse_by_index
"""

from icl_jax.synthetic.data import SparseRegressionBatch
from icl_jax.synthetic.data import TaskConfig
from icl_jax.synthetic.data import basis_masks
from icl_jax.synthetic.data import interleave
from icl_jax.synthetic.data import sample_balanced
from icl_jax.synthetic.data import sample_batch
from icl_jax.synthetic.data import sample_with_bases
from icl_jax.synthetic.data import x_positions
from icl_jax.synthetic.data import y_positions
from icl_jax.synthetic.evaluation import baseline_mse_by_index
from icl_jax.synthetic.evaluation import baseline_predictions
from icl_jax.synthetic.evaluation import knn_task_decodability
from icl_jax.synthetic.evaluation import per_class_task_decodability
from icl_jax.synthetic.evaluation import per_basis_mse
from icl_jax.synthetic.evaluation import td_features
from icl_jax.synthetic.model import PRESETS
from icl_jax.synthetic.model import NO_PATCH
from icl_jax.synthetic.model import GPT2Regressor
from icl_jax.synthetic.model import GPT2RegressorConfig
from icl_jax.synthetic.model import RegressorOutput
from icl_jax.synthetic.model import ResidualPatch
from icl_jax.synthetic.model import SyntheticModel
from icl_jax.synthetic.model import apply_model
from icl_jax.synthetic.model import count_params
from icl_jax.synthetic.model import init_params
from icl_jax.synthetic.model import param_count
from icl_jax.synthetic.training import ConfigMismatchError
from icl_jax.synthetic.training import TrainConfig
from icl_jax.synthetic.training import TrainResult
from icl_jax.synthetic.training import eval_sets
from icl_jax.synthetic.training import load_config
from icl_jax.synthetic.training import measure_step_time
from icl_jax.synthetic.training import restore_checkpoint
from icl_jax.synthetic.training import train
