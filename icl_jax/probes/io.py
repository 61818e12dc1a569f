"""Saving and loading probe parameters with their metadata (orbax).

A probe checkpoint is one orbax composite checkpoint directory with three
items:

* ``params``: the parameter pytree (a dict of arrays, or a
  :class:`~icl_jax.probes.logistic.LogisticProbe`), saved with
  ``StandardSave`` (tensorstore; values, shapes and dtypes round-trip
  exactly, bf16 included);
* ``metadata``: the caller's dict of JSON values (layer grid, label names,
  seeds, regularisation, ...), saved with ``JsonSave``. JSON has no tuples:
  tuples come back as lists;
* ``info``: our own format record (the params' container type).
"""

from __future__ import annotations

import json
import os
from typing import Any

import flax.serialization
import orbax.checkpoint as ocp

from icl_jax.probes import logistic

_FORMAT_VERSION = 1
# Containers that load_probe can rebuild by name.
_KNOWN_TYPES = {"LogisticProbe": logistic.LogisticProbe}


def save_probe(directory: str | os.PathLike, params: Any,
               metadata: dict[str, Any] | None = None, *,
               overwrite: bool = False) -> str:
  """Saves probe parameters and metadata.

  Args:
    directory: checkpoint directory (created; must not exist unless
      ``overwrite``).
    params: a pytree of arrays: nested dicts, or a ``LogisticProbe``.
    metadata: JSON-serialisable dict.
    overwrite: replace an existing checkpoint at ``directory``.

  Returns:
    The absolute checkpoint path.
  """
  path = os.path.abspath(os.fspath(directory))
  metadata = {} if metadata is None else metadata
  json.dumps(metadata, allow_nan=True)  # fail early, with json's message
  kind = type(params).__name__
  info = {"format_version": _FORMAT_VERSION,
          "params_type": kind if kind in _KNOWN_TYPES else "pytree"}
  state = flax.serialization.to_state_dict(params)
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
    ckptr.save(path, args=ocp.args.Composite(
        params=ocp.args.StandardSave(state),
        metadata=ocp.args.JsonSave(metadata),
        info=ocp.args.JsonSave(info)), force=overwrite)
  return path


def load_probe(directory: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
  """Loads what :func:`save_probe` wrote.

  Args:
    directory: the checkpoint directory.

  Returns:
    ``(params, metadata)``; params come back in their saved container
    (``LogisticProbe`` or nested dicts) with the saved dtypes and values.
  """
  path = os.path.abspath(os.fspath(directory))
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
    restored = ckptr.restore(path, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(),
        metadata=ocp.args.JsonRestore(),
        info=ocp.args.JsonRestore()))
  params = restored.params
  cls = _KNOWN_TYPES.get(restored.info.get("params_type"))
  if cls is not None:
    params = cls(**params)
  return params, restored.metadata
