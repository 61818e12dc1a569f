"""Interventions on the residual stream, as data.

The public patching API (block indices, each prompt's own token indices):

    Patch          an edit: replace / add / noise / zero / mean_ablate / skip
    HeadGroupPatch heads of several blocks replaced together (one forward)
    capture        activations of prompts at blocks -> Activations
    run_patches    K patches x N prompts in one sweep -> PatchResults
    patch_grid     layers x position sets x prompts -> Grid
    find_positions token indices of a piece of a prompt's text

The engine underneath: `engine.Engine` (cells as arrays, `spec.CellBatch`).
"""

from icl_jax.interventions.api import HeadGroupPatch, Patch
from icl_jax.interventions.grid import METRICS, Grid, find_positions, patch_grid
from icl_jax.interventions.patching import (SITES, Activations, PatchResults,
                                            capture, run_patches)
from icl_jax.interventions.spec import EDITS, TIMINGS

__all__ = ["Patch", "HeadGroupPatch", "capture", "Activations",
           "run_patches", "PatchResults", "patch_grid", "Grid",
           "find_positions", "EDITS", "TIMINGS", "SITES", "METRICS"]
