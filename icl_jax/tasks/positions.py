"""Position finders, both modes, in one import.

faithful (the study as run): ``faithful_positions``, ``line_positions``,
``get_position_index``, ``answer_token_positions`` -- absolute indices into
the BOS-prefixed sequence, drift included.

aligned (real token offsets): ``token_layout`` -> ``TokenLayout`` with
``mask(name)``; ``map_positions(src, tgt, position_set, on_mismatch)``.
"""

from icl_jax.tasks.alignment import ON_MISMATCH
from icl_jax.tasks.alignment import PositionMismatchError
from icl_jax.tasks.alignment import map_positions
from icl_jax.tasks.faithful_positions import LINE_CONDITIONS
from icl_jax.tasks.faithful_positions import POSITION_TYPES
from icl_jax.tasks.faithful_positions import answer_token_positions
from icl_jax.tasks.faithful_positions import faithful_positions
from icl_jax.tasks.faithful_positions import get_position_index
from icl_jax.tasks.faithful_positions import line_positions
from icl_jax.tasks.faithful_positions import skip_out_of_range
from icl_jax.tasks.layout import POSITION_SETS
from icl_jax.tasks.layout import TokenLayout
from icl_jax.tasks.layout import TokenRecord
from icl_jax.tasks.layout import UnknownPositionSetError
from icl_jax.tasks.layout import token_layout

__all__ = [
    "ON_MISMATCH", "PositionMismatchError", "map_positions",
    "LINE_CONDITIONS", "POSITION_TYPES", "answer_token_positions",
    "faithful_positions", "get_position_index", "line_positions",
    "skip_out_of_range", "POSITION_SETS", "TokenLayout", "TokenRecord",
    "UnknownPositionSetError", "token_layout",
]
