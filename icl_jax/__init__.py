"""icl_jax: causal studies of in-context learning in JAX/Flax."""

__version__ = "0.1.0"


def load(name_or_path, dtype=None, **kwargs):
  """Loads a model: see :func:`icl_jax.convert.loading.load`."""
  from icl_jax.convert.loading import load as _load

  return _load(name_or_path, dtype=dtype, **kwargs)
