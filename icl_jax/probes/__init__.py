"""Probes on hidden states: what a layer's activations encode.

Modules (import the one you need; this package imports nothing eagerly, so
``orbax`` and ``optax`` load only when used):

* ``logistic``: multinomial logistic-regression probes (Optax L-BFGS, L2),
  vmapped over (layer, position-set) slices; held-out evaluation.
* ``centroid``: nearest-centroid probes over slices and splits.
* ``splits``: stratified seeded splits (sklearn-identical, pure NumPy).
* ``evaluation``: pooled held-out accuracy with a Wilson interval.
* ``dot_icl``: the DOT-ICL study's exp2 / exp7 probes, as run.
* ``task_decodability``: Han et al.'s leave-one-out kNN task decodability.
* ``task_vectors``: mean-activation task vectors and their injection.
* ``io``: orbax save/load of probe parameters with metadata.
"""
