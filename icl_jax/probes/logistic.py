"""Multinomial logistic-regression probes, fitted for many slices at once.

A "slice" is one (layer, position set) cell of a sweep; a sweep's features are
stacked to ``[G, M, D]`` (G slices, M examples, D dims) and every slice shares
the labels ``[M]``. One jit-compiled program fits all ``G`` slices with
``jax.vmap`` (and all splits of a cross-validation, with ``lax.map`` over the
split axis so that only one ``[G, M, D]`` standardised copy lives at a time).

Objective (per slice, full batch, deterministic, zero init)::

    L(W, b) = (1/n) sum_i t_i * CE(softmax(z_i W + b), y_i) + (l2/2) ||W||_F^2

with ``t_i`` the 0/1 training mask, ``n = sum_i t_i``, ``z_i`` the (optionally
standardised) features, ``W [D, C]`` (one column per class, the symmetric
"multinomial" parameterisation) and the intercept ``b [C]`` not penalised.

Relation to scikit-learn: ``LogisticRegression(C=C)`` (lbfgs, multinomial)
minimises ``C * sum_i CE_i + (1/2)||W||^2`` with the same parameterisation and
an unpenalised intercept. Dividing by ``C*n`` gives the objective above with::

    l2 = 1 / (C * n_train)          (see l2_from_sklearn_c / sklearn_c_from_l2)

so sklearn's default ``C=1`` on 160 training examples is ``l2 = 1/160``.
Standardisation (``standardize=True``) is sklearn's ``StandardScaler`` fitted
on the training rows (population std; constant features get scale 1) before
the penalty, i.e. the pipeline ``StandardScaler() -> LogisticRegression``.

Optimiser: ``optax.lbfgs`` (zoom line search) in a ``lax.while_loop`` that
stops when the gradient's L2 norm (or, with ``tol_norm="max"``, its largest
absolute component: scikit-learn's lbfgs ``gtol`` rule) is below ``tol`` or
after ``max_iter``
iterations. Under ``vmap`` the loop runs until every slice has stopped; slices
that stopped earlier are frozen (JAX selects their old state), so a batched fit
equals the one-slice fit up to floating-point reassociation.

Numerics: features are cast to float32 (residuals may be bf16/fp16) and all
matmuls use ``Precision.HIGHEST`` so GPUs do not silently use TF32.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from icl_jax.probes import evaluation
from icl_jax.probes import splits as splits_lib

_HI = jax.lax.Precision.HIGHEST


@flax.struct.dataclass
class LogisticProbe:
  """Fitted probe(s); leading axes ``[...]`` are e.g. ``[G]`` or ``[S, G]``.

  Attributes:
    w: ``[..., D, C]`` weights acting on standardised features.
    b: ``[..., C]`` intercepts.
    mean: ``[..., D]`` feature offsets (zeros without standardisation).
    scale: ``[..., D]`` feature scales (ones without standardisation).
    loss: ``[...]`` final objective value.
    grad_norm: ``[...]`` final gradient L2 norm (convergence diagnostic).
    num_iter: ``[...]`` L-BFGS iterations used.
  """

  w: jax.Array
  b: jax.Array
  mean: jax.Array
  scale: jax.Array
  loss: jax.Array
  grad_norm: jax.Array
  num_iter: jax.Array


def l2_from_sklearn_c(c: float, n_train: int) -> float:
  """This module's ``l2`` equivalent to sklearn's ``C`` on n_train rows."""
  return 1.0 / (c * n_train)


def sklearn_c_from_l2(l2: float, n_train: int) -> float:
  """Inverse of :func:`l2_from_sklearn_c`."""
  return 1.0 / (l2 * n_train)


def _standardization(x, weight, standardize: bool):
  """Weighted mean / population std of x ``[M, D]`` over rows with weight 1."""
  d = x.shape[-1]
  if not standardize:
    return jnp.zeros((d,), x.dtype), jnp.ones((d,), x.dtype)
  n = weight.sum()
  mean = jnp.einsum("m,md->d", weight, x, precision=_HI) / n
  var = jnp.einsum("m,md->d", weight, jnp.square(x - mean), precision=_HI) / n
  # Constant features keep scale 1, like sklearn's StandardScaler, whose test
  # is var <= n*eps*var + (n*eps*mean)^2; we use float32's eps (our precision)
  # and drop the negligible first term. Dividing by a rounding residue would
  # blow float noise up to unit variance.
  eps = jnp.finfo(jnp.float32).eps
  constant = var <= jnp.square(n * eps * mean)
  return mean, jnp.where(constant, 1.0, jnp.sqrt(var))


def _grad_size(grad, tol_norm: str):
  if tol_norm == "max":
    return jnp.max(jnp.stack([jnp.max(jnp.abs(g))
                              for g in jax.tree_util.tree_leaves(grad)]))
  return otu.tree_norm(grad)


def _fit_one(x, y1h, weight, l2, *, standardize, max_iter, tol, memory_size,
             tol_norm="l2"):
  """Fits one slice. x ``[M, D]``, y1h ``[M, C]``, weight ``[M]`` 0/1."""
  mean, scale = _standardization(x, weight, standardize)
  z = (x - mean) / scale  # [M, D]
  n = weight.sum()

  def objective(params):
    logits = jnp.matmul(z, params["w"], precision=_HI) + params["b"]  # [M, C]
    ce = -jnp.sum(y1h * jax.nn.log_softmax(logits), axis=-1)  # [M]
    penalty = 0.5 * l2 * jnp.sum(jnp.square(params["w"]))
    return jnp.sum(weight * ce) / n + penalty

  d, c = x.shape[-1], y1h.shape[-1]
  params = {"w": jnp.zeros((d, c), jnp.float32),
            "b": jnp.zeros((c,), jnp.float32)}
  opt = optax.lbfgs(memory_size=memory_size)
  value_and_grad = optax.value_and_grad_from_state(objective)

  def body(carry):
    params, state = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = opt.update(
        grad, state, params, value=value, grad=grad, value_fn=objective)
    return optax.apply_updates(params, updates), state

  def cond(carry):
    _, state = carry
    k = otu.tree_get(state, "count")
    gnorm = _grad_size(otu.tree_get(state, "grad"), tol_norm)
    return (k == 0) | ((k < max_iter) & (gnorm >= tol))

  params, state = jax.lax.while_loop(cond, body, (params, opt.init(params)))
  return LogisticProbe(
      w=params["w"], b=params["b"], mean=mean, scale=scale,
      loss=objective(params),
      grad_norm=otu.tree_norm(jax.grad(objective)(params)),
      num_iter=otu.tree_get(state, "count"))


def _logits(probe: LogisticProbe, x):
  """x ``[G, M, D]``, probe ``[G]`` -> logits ``[G, M, C]``."""
  z = (x - probe.mean[:, None, :]) / probe.scale[:, None, :]
  logits = jnp.einsum("gmd,gdc->gmc", z, probe.w, precision=_HI)
  return logits + probe.b[:, None]


@functools.partial(
    jax.jit,
    static_argnames=("num_classes", "standardize", "max_iter", "memory_size",
                     "tol_norm"))
def _fit_and_predict(x, labels, weights, l2, tol, *, num_classes, standardize,
                     max_iter, memory_size, tol_norm="l2"):
  """The one compiled program: fits ``[S, G]`` probes and predicts all rows.

  Args:
    x: ``[G, M, D]`` features.
    labels: ``[M]`` int class indices.
    weights: ``[S, M]`` training masks (1.0 = train).
    l2: ``[S]`` penalty per split.
    tol: scalar gradient-norm tolerance.

  Returns:
    ``(probe [S, G], predictions [S, G, M] int32)``.
  """
  x = x.astype(jnp.float32)
  y1h = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)  # [M, C]
  fit = functools.partial(
      _fit_one, standardize=standardize, max_iter=max_iter, tol=tol,
      memory_size=memory_size, tol_norm=tol_norm)
  fit_all_slices = jax.vmap(fit, in_axes=(0, None, None, None))  # over G

  def one_split(args):
    weight, l2_s = args
    probe = fit_all_slices(x, y1h, weight, l2_s)  # [G]
    pred = jnp.argmax(_logits(probe, x), axis=-1).astype(jnp.int32)  # [G, M]
    return probe, pred

  # Sequential over splits: bounds memory at one standardised [G, M, D] copy.
  return jax.lax.map(one_split, (weights.astype(jnp.float32), l2))


def _check_tol_norm(tol_norm: str) -> None:
  if tol_norm not in ("l2", "max"):
    raise ValueError(f"tol_norm must be 'l2' or 'max', got {tol_norm!r}")


def _resolve_l2(l2, c, n_train: np.ndarray) -> np.ndarray:
  if l2 is not None and c is not None:
    raise ValueError("pass either l2 or C, not both")
  if l2 is not None:
    return np.full(n_train.shape, l2, np.float32)
  c = 1.0 if c is None else c  # sklearn's default C.
  return (1.0 / (c * n_train)).astype(np.float32)


def _as_slices(features) -> tuple[jax.Array, bool]:
  features = jnp.asarray(features)
  if features.ndim == 2:
    return features[None], True
  if features.ndim != 3:
    raise ValueError(
        f"features must be [G, M, D] or [M, D], got {features.shape}")
  return features, False


def fit_logistic(
    features,
    labels,
    *,
    num_classes: int | None = None,
    l2: float | None = None,
    C: float | None = None,  # pylint: disable=invalid-name
    train_mask=None,
    standardize: bool = True,
    max_iter: int = 500,
    tol: float = 1e-5,
    memory_size: int = 10,
    tol_norm: str = "l2",
) -> LogisticProbe:
  """Fits one multinomial logistic probe per slice, all slices in one program.

  Args:
    features: ``[G, M, D]`` (or ``[M, D]`` for a single slice).
    labels: ``[M]`` int class indices in ``[0, num_classes)``.
    num_classes: ``C``; default ``max(labels) + 1``.
    l2: penalty of the mean-loss objective (module docstring).
    C: scikit-learn's inverse regularisation instead of ``l2``
      (``l2 = 1/(C*n_train)``); if neither is given, ``C = 1``.
    train_mask: optional ``[M]`` bool; rows fitted on (default: all).
    standardize: standardise features on the training rows first.
    max_iter: L-BFGS iteration cap.
    tol: stop when the gradient L2 norm is below this.
    memory_size: L-BFGS history length.
    tol_norm: "l2" (default) or "max" (largest absolute gradient component,
      scikit-learn's lbfgs ``gtol`` rule).

  Returns:
    A :class:`LogisticProbe` with leading axis ``[G]`` (none for ``[M, D]``
    input): ``w [G, D, C]``, ``b [G, C]``.
  """
  x, single = _as_slices(features)
  labels = np.asarray(labels, dtype=np.int32)
  num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
  m = x.shape[1]
  mask = np.ones((1, m), bool) if train_mask is None else np.asarray(
      train_mask, bool).reshape(1, m)
  l2_arr = _resolve_l2(l2, C, mask.sum(axis=1))
  _check_tol_norm(tol_norm)
  probe, _ = _fit_and_predict(
      x, labels, mask, l2_arr, jnp.float32(tol), num_classes=num_classes,
      standardize=standardize, max_iter=max_iter, memory_size=memory_size,
      tol_norm=tol_norm)
  probe = jax.tree.map(lambda a: a[0], probe)  # drop the split axis
  return jax.tree.map(lambda a: a[0], probe) if single else probe


def logistic_logits(probe: LogisticProbe, features) -> jax.Array:
  """Logits ``[G, M, C]`` for features ``[G, M, D]`` (``[M, C]`` for 2-D)."""
  x, single = _as_slices(features)
  if single:
    probe = jax.tree.map(lambda a: a[None], probe)
  out = _logits(probe, x.astype(jnp.float32))
  return out[0] if single else out


def logistic_predict(probe: LogisticProbe, features) -> jax.Array:
  """Predicted class indices ``[G, M]`` (``[M]`` for 2-D features)."""
  return jnp.argmax(logistic_logits(probe, features), axis=-1)


def fold_standardization(probe: LogisticProbe) -> tuple[jax.Array, jax.Array]:
  """Raw-feature-space weights: ``x @ w + b`` equals the probe's logits.

  Returns:
    ``(w [..., D, C], b [..., C])``. Mathematically exact; numerically the
    unfolded form is better conditioned when features have large offsets.
  """
  w = probe.w / probe.scale[..., :, None]
  b = probe.b - jnp.einsum("...d,...dc->...c", probe.mean, w, precision=_HI)
  return w, b


def evaluate_logistic(
    features,
    labels,
    splits: Sequence[splits_lib.Split] | None = None,
    *,
    l2: float | None = None,
    C: float | None = None,  # pylint: disable=invalid-name
    standardize: bool = True,
    max_iter: int = 500,
    tol: float = 1e-5,
    memory_size: int = 10,
    z: float = 1.96,
    return_probes: bool = False,
):
  """Held-out accuracy of logistic probes for every slice.

  Args:
    features: ``[G, M, D]`` (or ``[M, D]``).
    labels: ``[M]`` labels (any values; mapped to sorted class indices).
    splits: ``[(train_idx, test_idx), ...]``; default 5-fold
      :func:`~icl_jax.probes.splits.stratified_kfold` with seed 0.
    l2: penalty (module docstring); or ``C`` as in scikit-learn, converted
      per split with that split's training size. Default ``C = 1``.
    standardize: standardise on each split's training rows.
    max_iter: L-BFGS iteration cap.
    tol: gradient-norm tolerance.
    memory_size: L-BFGS history length.
    z: normal quantile of the Wilson interval.
    return_probes: also return the ``[S, G]`` probes.

  Returns:
    :class:`~icl_jax.probes.evaluation.ProbeEvaluation` (pooled accuracy with
    Wilson CI, per-split accuracy), and the probes if ``return_probes``.
  """
  x, _ = _as_slices(features)
  classes, ids = evaluation.encode_labels(labels)
  if splits is None:
    splits = splits_lib.stratified_kfold(ids, n_splits=5, seed=0)
  train_mask, test_mask = splits_lib.split_masks(splits, x.shape[1])
  probes, preds = fit_predict(
      x, ids, train_mask, num_classes=len(classes), l2=l2, C=C,
      standardize=standardize, max_iter=max_iter, tol=tol,
      memory_size=memory_size)
  result = evaluation.evaluate_predictions(
      preds, ids, test_mask, classes, z=z)
  return (result, probes) if return_probes else result


def fit_predict(
    features,
    labels,
    train_masks,
    *,
    num_classes: int | None = None,
    l2: float | None = None,
    C: float | None = None,  # pylint: disable=invalid-name
    standardize: bool = True,
    max_iter: int = 500,
    tol: float = 1e-5,
    memory_size: int = 10,
    tol_norm: str = "l2",
):
  """Fits ``[S, G]`` probes for S arbitrary training masks in one program.

  Unlike :func:`evaluate_logistic`, the masks need not come with disjoint
  test sets: e.g. k cross-validation folds plus one all-rows mask give
  held-out *and* training accuracy from a single compiled program.

  Args:
    features: ``[G, M, D]`` (or ``[M, D]``).
    labels: ``[M]`` int class indices in ``[0, num_classes)``.
    train_masks: ``[S, M]`` bool.
    num_classes, l2, C, standardize, max_iter, tol, memory_size, tol_norm:
      as in :func:`fit_logistic` (``C`` is converted per mask with its row
      count).

  Returns:
    ``(probes [S, G], predictions [S, G, M] int32)`` for every row.
  """
  x, _ = _as_slices(features)
  labels = np.asarray(labels, dtype=np.int32)
  num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
  masks = np.asarray(train_masks, bool)
  if masks.ndim != 2 or masks.shape[1] != x.shape[1]:
    raise ValueError(f"train_masks must be [S, M={x.shape[1]}], got "
                     f"{masks.shape}")
  l2_arr = _resolve_l2(l2, C, masks.sum(axis=1))
  _check_tol_norm(tol_norm)
  probes, preds = _fit_and_predict(
      x, labels, masks, l2_arr, jnp.float32(tol), num_classes=num_classes,
      standardize=standardize, max_iter=max_iter, memory_size=memory_size,
      tol_norm=tol_norm)
  return probes, np.asarray(preds)
