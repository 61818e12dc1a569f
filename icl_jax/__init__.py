"""icl_jax: causal studies of in-context learning in JAX/Flax.

    lm = icl_jax.load("gemma3-270m")
    acts = icl_jax.capture(lm, [source], layers=[6])
    out = icl_jax.run_patches(lm, [target], [icl_jax.Patch.replace(
        6, [-1], acts.values(6, [-1])[0])])

The patching names (Patch, capture, run_patches, patch_grid, ...) come from
`icl_jax.interventions`, imported on first use so that `import icl_jax`
stays light.
"""

__version__ = "0.1.0"

_PATCHING = ("Patch", "HeadGroupPatch", "capture", "Activations",
             "run_patches", "PatchResults", "patch_grid", "Grid",
             "find_positions", "EDITS", "TIMINGS", "SITES", "METRICS")
__all__ = ["load", *_PATCHING]


def load(name_or_path, dtype=None, **kwargs):
  """Loads a model: see :func:`icl_jax.convert.loading.load`. Also turns on
  JAX's persistent compilation cache (:mod:`icl_jax.xla_cache`; off with
  ``ICL_JAX_XLA_CACHE=off``), so programs compiled for the model in one
  process are reused by the next."""
  from icl_jax import xla_cache
  from icl_jax.convert.loading import load as _load

  xla_cache.enable()
  return _load(name_or_path, dtype=dtype, **kwargs)


def __getattr__(name):
  if name in _PATCHING:
    import icl_jax.interventions as _iv

    return getattr(_iv, name)
  raise AttributeError(f"module 'icl_jax' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_PATCHING))
