"""The public patching API: interventions as data, in the prompt's own tokens.

    lm = icl_jax.load("gemma3-270m")
    acts = icl_jax.capture(lm, [source], layers=[6])
    patch = icl_jax.Patch.replace(6, [-1], acts.values(6, [-1])[0])
    out = icl_jax.run_patches(lm, [target], [patch], max_new_tokens=5)
    out.texts[0][0]          # [patch][prompt]

Coordinates. `layer` is a block index: the edit applies to the output of
block `layer` (residual index layer+1); -1 is the embedding output. Positions
are token indices of each prompt exactly as the tokenizer returns it for that
prompt alone (`lm.tokenizer(p, add_special_tokens=True)`, so t = 0 is BOS
where the tokenizer adds one); negative indices count from the prompt's own
end (-1 = its last token). Padding never shows: capture and results are
in these coordinates whatever the batch looks like.

Positions spec (`Patch.positions`): "all", an int, a slice, or a list of
ints, the same spec for every prompt (resolved per prompt, so -1 is each
prompt's last token); or a list with one such spec per prompt.
Values (`replace` / `mean_ablate`: the new residuals; `add`: the added
vectors): [D] (every position), [k, D] (row j for the j-th listed
position), or a list / [N, k, D] array with one of those per prompt.

How a run maps onto the engine (icl_jax/interventions/engine.py). The engine
lays out N prompts as their longest common prefix (P tokens, run once) plus
right-padded queries, and slot t of a prompt is its token t: user positions
are slots. Its cells (one edit each) share one mask and one set of values
across the N prompts of a target set. So a patch whose resolved positions
and values are the same for every prompt is one cell on the target set of
all prompts (prefix shared); a patch that differs between prompts (per-prompt
positions or values, or a negative index / "all" / slice over prompts of
different lengths) is one cell per prompt, each on a target set holding that
prompt alone but laid out like the full set (same P and query length), so
all of them share one compiled program and draw the same noise per slot.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from icl_jax.interventions.spec import (EDITS, SITES, TIMINGS, CellBatch,
                                        make_cells, site_index)

_VALUE_EDITS = ("replace", "add", "mean_ablate")


# --------------------------------------------------------------------------
# Positions and values
# --------------------------------------------------------------------------

def _is_int(x) -> bool:
  return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_per_prompt(spec) -> bool:
  if isinstance(spec, np.ndarray):
    return spec.ndim == 2
  return (isinstance(spec, (list, tuple)) and len(spec) > 0
          and not any(_is_int(x) for x in spec))


def _canon_one(spec):
  if spec is None or (isinstance(spec, str) and spec == "all"):
    return "all"
  if _is_int(spec):
    return (int(spec),)
  if isinstance(spec, slice):
    return spec
  if isinstance(spec, np.ndarray) and spec.ndim == 1:
    spec = spec.tolist()
  if isinstance(spec, (list, tuple)) and all(_is_int(x) for x in spec):
    return tuple(int(x) for x in spec)
  raise ValueError(f"positions must be 'all', an int, a slice or a list of "
                   f"ints (or one of those per prompt), got {spec!r}")


def canonical_positions(spec):
  """A positions spec in canonical form (tuples; per prompt: a list)."""
  if _is_per_prompt(spec):
    return [_canon_one(s) for s in spec]
  return _canon_one(spec)


def resolve_positions(spec, length: int, where: str = "") -> np.ndarray:
  """Token indices int [k] of one prompt of `length` tokens for a
  (non-per-prompt) positions spec; negative indices count from the end."""
  spec = _canon_one(spec)
  if spec == "all":
    return np.arange(length)
  if isinstance(spec, slice):
    return np.arange(length)[spec]
  pos = np.asarray(spec, np.int64).reshape(-1)
  bad = pos[(pos >= length) | (pos < -length)]
  if len(bad):
    raise ValueError(
        f"{where}position {int(bad[0])} out of range for a prompt of "
        f"{length} tokens (valid: 0..{length - 1}, or -{length}..-1)")
  pos = np.where(pos < 0, pos + length, pos)
  if len(np.unique(pos)) != len(pos):
    raise ValueError(f"{where}repeated position in {list(spec)}")
  return pos


def _canon_values(values, what: str):
  if values is None:
    return None
  per = (isinstance(values, (list, tuple)) and len(values) > 0
         and all(np.ndim(v) >= 1 for v in values))
  if per or (isinstance(values, np.ndarray) and values.ndim == 3):
    out = tuple(np.asarray(v, np.float32) for v in values)
  else:
    out = np.asarray(values, np.float32)
  for v in (out if isinstance(out, tuple) else (out,)):
    if v.ndim not in (1, 2):
      raise ValueError(f"{what} must be [D], [positions, D] or one of "
                       f"those per prompt; got an array of shape {v.shape}")
    if not np.isfinite(v).all():
      raise ValueError(f"{what} contain NaN or inf")
  return out


# --------------------------------------------------------------------------
# Patch
# --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Patch:
  """One intervention as data: an edit of block `layer`'s output residual
  at token `positions` of every prompt it runs on.

  Fields: edit (one of EDITS), layer (block index, -1 = embedding output),
  site (where in block `layer`: "resid_post" (default; "resid" too),
  "attn_out", "head_out" with heads (one head index or a group), or
  "mlp_out"; see `spec` for the names, TransformerLens-like),
  positions (see the module doc), values ([D] | [k, D] | per prompt; for
  replace / add / mean_ablate), sigma (noise scale), relative (noise scaled
  by the residual's rms at each position), seed (noise seed), decode ([D]:
  the edit's value at every generated token with timing "every_step"),
  name (a label for tables). Build one with the constructors below.
  A Python list of arrays as values means one entry per prompt: pass a
  [k, D] matrix as an array.
  """

  edit: str
  layer: int
  positions: Any = "all"
  values: Any = None
  sigma: float = 0.0
  relative: bool = False
  seed: int = 0
  decode: Any = None
  name: str = ""
  site: str = "resid_post"
  heads: Any = None

  def __post_init__(self):
    if self.edit not in EDITS:
      raise ValueError(f"unknown edit {self.edit!r}; known: {EDITS}")
    object.__setattr__(self, "site", SITES[site_index(self.site)])
    self._check_site()
    if not _is_int(self.layer) or self.layer < -1:
      raise ValueError(f"layer must be a block index >= 0, or -1 for the "
                       f"embedding output; got {self.layer!r}")
    if self.edit == "skip" and self.layer == -1:
      raise ValueError("skip needs a block (layer >= 0): the embedding "
                       "output (layer -1) has no block input to skip to")
    object.__setattr__(self, "layer", int(self.layer))
    object.__setattr__(self, "positions",
                       canonical_positions(self.positions))
    has = self.values is not None
    if has != (self.edit in _VALUE_EDITS):
      raise ValueError(f"edit {self.edit!r} " + (
          "takes no values" if has else "needs values"))
    object.__setattr__(self, "values", _canon_values(self.values, "values"))
    if self.edit == "noise" and not self.sigma > 0:
      raise ValueError(f"noise needs sigma > 0, got {self.sigma}")
    if self.edit != "noise" and (self.sigma or self.relative):
      raise ValueError(f"sigma / relative apply to noise, not {self.edit!r}")
    if self.decode is not None:
      dec = _canon_values(self.decode, "decode values")
      if not isinstance(dec, np.ndarray) or dec.ndim != 1:
        raise ValueError("decode must be one vector [D]")
      object.__setattr__(self, "decode", dec)

  def _check_site(self):
    """site / heads: component sites need a block; heads go with
    head_out (an int or a list of ints: the group whose summed output is
    edited)."""
    if self.site != "resid_post" and (not _is_int(self.layer)
                                      or self.layer < 0):
      raise ValueError(f"site {self.site} needs a block (layer >= 0)")
    if self.site != "resid_post" and self.edit == "skip":
      raise ValueError("skip is a residual edit; ablate a component with "
                       "zero or mean_ablate")
    if (self.heads is None) == (self.site == "head_out"):
      raise ValueError("heads= goes with site='head_out' (and it needs one)")
    if self.heads is not None:
      h = [self.heads] if _is_int(self.heads) else list(self.heads)
      if not h or not all(_is_int(x) and x >= 0 for x in h) or \
          len(set(h)) != len(h):
        raise ValueError(f"heads must be distinct head indices, got "
                         f"{self.heads!r}")
      object.__setattr__(self, "heads", tuple(int(x) for x in h))

  @classmethod
  def replace(cls, layer: int, positions, values, *, decode=None,
              name: str = "", site: str = "resid_post",
              heads=None) -> "Patch":
    """Sets the residual (or `site`) at `positions` to `values` ([D] |
    [k,D] | per prompt), e.g. activations captured from another prompt."""
    return cls("replace", layer, positions, values, decode=decode, name=name,
               site=site, heads=heads)

  @classmethod
  def add(cls, layer: int, positions, vector, *, decode=None,
          name: str = "", site: str = "resid_post", heads=None) -> "Patch":
    """Adds `vector` ([D] | [k,D] | per prompt) at `positions` (task or
    steering vectors). With timing every_step a [D] vector is also added at
    every generated token unless `decode` says otherwise."""
    return cls("add", layer, positions, vector, decode=decode, name=name,
               site=site, heads=heads)

  @classmethod
  def noise(cls, layer: int, positions, sigma: float, *,
            relative: bool = False, seed: int = 0,
            name: str = "", site: str = "resid_post",
            heads=None) -> "Patch":
    """Adds Gaussian noise N(0, sigma^2 I) at `positions` (absolute), or
    sigma * rms(residual) per position with relative=True."""
    return cls("noise", layer, positions, sigma=float(sigma),
               relative=bool(relative), seed=int(seed), name=name, site=site,
               heads=heads)

  @classmethod
  def zero(cls, layer: int, positions, *, name: str = "",
           site: str = "resid_post", heads=None) -> "Patch":
    """Sets the residual (or `site`: zero-ablation) at `positions` to 0."""
    return cls("zero", layer, positions, name=name, site=site, heads=heads)

  @classmethod
  def mean_ablate(cls, layer: int, positions, mean, *, decode=None,
                  name: str = "", site: str = "resid_post",
                  heads=None) -> "Patch":
    """Sets the residual (or `site`) at `positions` to `mean` ([D], e.g.
    `Activations.mean(layer)`, or [k,D] | per prompt)."""
    return cls("mean_ablate", layer, positions, mean, decode=decode,
               name=name, site=site, heads=heads)

  @classmethod
  def skip(cls, layer: int, positions="all", *, name: str = "") -> "Patch":
    """Skips block `layer` (>= 0) at `positions`: its output := its input."""
    return cls("skip", layer, positions, name=name)

  @classmethod
  def clean(cls, name: str = "clean") -> "Patch":
    """No edit (an empty position list): the clean run, as a patch."""
    return cls("zero", 0, [], name=name)

  def label(self) -> str:
    """A short description, e.g. 'replace@3[-1]', 'zero@2.head_out1[-1]'
    (or the name)."""
    if self.name:
      return self.name
    p = self.positions
    pos = ("all" if p == "all" else "per-prompt" if isinstance(p, list)
           else f"{p.start}:{p.stop}" if isinstance(p, slice)
           else ",".join(map(str, p)))
    site = "" if self.site == "resid_post" else f".{self.site}"
    if self.heads is not None:
      site += ",".join(map(str, self.heads))
    return f"{self.edit}@{self.layer}{site}[{pos}]"

  def resolve(self, prompt: int, length: int, n_prompts: int,
              d_model: int):
    """(positions int [k], values float [k, D] or None) for prompt
    `prompt` (of `length` tokens; one of `n_prompts`) in token indices."""
    where = f"patch {self.label()}, prompt {prompt}: "
    spec = self.positions
    if isinstance(spec, list):
      if len(spec) != n_prompts:
        raise ValueError(f"{where}{len(spec)} position lists for "
                         f"{n_prompts} prompts")
      spec = spec[prompt]
    pos = resolve_positions(spec, length, where)
    v = self.values
    if v is None:
      return pos, None
    if isinstance(v, tuple):
      if len(v) != n_prompts:
        raise ValueError(f"{where}values for {len(v)} prompts, running "
                         f"{n_prompts}")
      v = v[prompt]
    if v.shape[-1] != d_model:
      raise ValueError(f"{where}values have width {v.shape[-1]}, the model "
                       f"has d_model={d_model}")
    if v.ndim == 2 and v.shape[0] != len(pos):
      raise ValueError(
          f"{where}values have {v.shape[0]} rows for {len(pos)} positions "
          f"{pos.tolist()} (give [D], or one row per position)")
    return pos, np.broadcast_to(v, (len(pos), d_model))


@dataclasses.dataclass(frozen=True, eq=False)
class HeadGroupPatch:
  """Replaces a group of heads spanning several blocks, in one forward.

  heads: {layer: heads} (a head index or a list per block) or a bool
  [n_layers, n_heads] mask; values: {layer: [D] | [k, D]}, per block the
  group's summed output there (site head_out, before Gemma's
  post-attention norm, as `Patch(site="head_out", heads=...)` edits it;
  e.g. `Activations.values(layer, positions, "head_out", heads=...)` of a
  source prompt); positions: one positions spec for every prompt (it must
  resolve to the same token indices in each).

  Semantics: the blocks' edits are applied together in one prompt forward,
  so the edit at block l changes the residual that blocks > l read (and so
  their other heads and MLPs), while every block's values stay fixed (the
  source run's clean head outputs): the "patch the group together" of
  TransformerLens / pyvene multi-component patches, not a chain of
  one-block patches. All heads of all blocks is not the residual patch
  either: the MLPs still read the target's own tokens. Edit "replace",
  timing "prefill" only (the edited K/V stay in the cache; generated
  tokens are not edited). `run_patches` runs these cells through
  `blockwise` (one compiled forward per cell over the prompts' common
  prefix and queries), not the engine's one-block sweep; their `delta` is
  NaN (not measured).
  """

  heads: Any
  positions: Any
  values: Any
  name: str = ""
  edit = "replace"  # class constants (not fields): what `table` reads
  site = "head_out"

  def __post_init__(self):
    h = self.heads
    if isinstance(h, np.ndarray) or (isinstance(h, (list, tuple)) and h
                                     and not _is_int(h[0])):
      m = np.asarray(h, bool)
      if m.ndim != 2:
        raise ValueError(f"a head mask must be bool [layers, heads], got "
                         f"shape {m.shape}")
      h = {l: np.nonzero(m[l])[0].tolist() for l in range(m.shape[0])}
    if not isinstance(h, dict):
      raise ValueError("heads must be {layer: heads} or a bool [L, N] mask")
    groups = {}
    for l, hs in h.items():
      hs = [hs] if _is_int(hs) else list(hs)
      if not _is_int(l) or l < 0 or not all(_is_int(x) and x >= 0
                                             for x in hs) \
          or len(set(hs)) != len(hs):
        raise ValueError(f"heads: block {l!r} -> {hs!r} is not a block "
                         "index >= 0 with distinct head indices")
      if hs:
        groups[int(l)] = tuple(sorted(int(x) for x in hs))
    if not groups:
      raise ValueError("a head group selects no head")
    object.__setattr__(self, "heads", tuple(sorted(groups.items())))
    object.__setattr__(self, "positions", _canon_one(self.positions))
    if not isinstance(self.values, dict) or set(
        int(l) for l in self.values) != set(groups):
      raise ValueError(f"values must be a dict with one entry per block of "
                       f"the group {sorted(groups)}")
    object.__setattr__(self, "values", {
        int(l): _canon_values(np.asarray(v, np.float32), "values")
        for l, v in self.values.items()})

  @property
  def layer(self) -> int:
    """The group's first block (for tables)."""
    return self.heads[0][0]

  def label(self) -> str:
    """e.g. 'replace@{2:0,3;5:1}.head_out[...]' (or the name)."""
    if self.name:
      return self.name
    g = ";".join(f"{l}:" + ",".join(map(str, hs)) for l, hs in self.heads)
    return f"replace@{{{g}}}.head_out"

  def mask(self, n_layers: int, n_heads: int) -> np.ndarray:
    """bool [n_layers, n_heads]: the selected heads."""
    m = np.zeros((n_layers, n_heads), bool)
    for l, hs in self.heads:
      m[l, list(hs)] = True
    return m

  def resolve(self, length: int, d_model: int):
    """(positions int [k], {layer: values [k, D]}) in one prompt of
    `length` tokens."""
    pos = resolve_positions(self.positions, length, f"{self.label()}: ")
    vals = {}
    for l, v in self.values.items():
      if v.shape[-1] != d_model or (v.ndim == 2 and v.shape[0] != len(pos)):
        raise ValueError(f"{self.label()}: values at block {l} have shape "
                         f"{v.shape}; need [{d_model}] or [{len(pos)}, "
                         f"{d_model}]")
      vals[l] = np.broadcast_to(v, (len(pos), d_model))
    return pos, vals


# --------------------------------------------------------------------------
# Checks and cells
# --------------------------------------------------------------------------

def decode_vector(patch: Patch, timing: str, d_model: int):
  """The [D] value of `patch` at generated tokens (zeros unless every_step);
  ValueError for combinations of edit and timing that mean nothing."""
  where = f"patch {patch.label()}: "
  if timing not in TIMINGS:
    raise ValueError(f"unknown timing {timing!r}; known: {TIMINGS}")
  if timing != "every_step":
    if patch.decode is not None:
      raise ValueError(f"{where}decode values apply only with timing="
                       f"'every_step', not {timing!r}")
    return np.zeros(d_model, np.float32)
  dec = patch.decode
  if dec is None and patch.edit in _VALUE_EDITS:
    v = patch.values
    if not (isinstance(v, np.ndarray) and v.ndim == 1):
      raise ValueError(
          f"{where}{patch.edit} with timing 'every_step' needs decode= (the "
          "[D] value for generated tokens) unless its values are one [D] "
          "vector")
    dec = v
  if dec is None:
    return np.zeros(d_model, np.float32)
  if dec.shape != (d_model,):
    raise ValueError(f"{where}decode has shape {dec.shape}, the model has "
                     f"d_model={d_model}")
  return dec


def check_patches(lm, patches: Sequence[Patch], timing: str) -> list:
  """Validates patches against the model; returns their decode vectors."""
  L = lm.config.n_layers
  out = []
  for p in patches:
    if not isinstance(p, Patch):
      raise ValueError(f"expected Patch objects, got {type(p).__name__}")
    if p.layer >= L:
      raise ValueError(f"patch {p.label()}: layer {p.layer} outside the "
                       f"model (blocks 0..{L - 1}, or -1 for the embedding "
                       "output)")
    if p.heads is not None and max(p.heads) >= lm.config.n_heads:
      raise ValueError(f"patch {p.label()}: head {max(p.heads)} outside the "
                       f"model ({lm.config.n_heads} heads)")
    out.append(decode_vector(p, timing, lm.config.d_model))
  return out


def cell_for(patch: Patch, positions, values, decode, slots: int,
             d_model: int) -> CellBatch:
  """One engine cell over `slots` slots (slot t = token t of the prompt)."""
  mask = np.zeros((1, slots), bool)
  mask[0, positions] = True
  vals = None
  if values is not None:
    vals = np.zeros((1, slots, d_model), np.float32)
    vals[0, positions] = values
  heads = None
  if patch.heads is not None:
    heads = np.zeros((1, max(patch.heads) + 1), bool)
    heads[0, list(patch.heads)] = True
  return make_cells(patch.edit, [patch.layer], mask, d_model, values=vals,
                    sigma=patch.sigma, relative=patch.relative,
                    seed=patch.seed, decode_values=decode[None],
                    site=patch.site, heads=heads)


def token_ids(lm, prompts) -> list[list[int]]:
  """Each prompt's token ids (strings are tokenized with special tokens,
  as `lm.encode` does; sequences of ints are taken as they are)."""
  if isinstance(prompts, str):
    raise ValueError("prompts must be a list (got one string)")
  out = []
  for p in prompts:
    if isinstance(p, str):
      if lm.tokenizer is None:
        raise ValueError(f"model {lm.name!r} has no tokenizer; give token "
                         "ids")
      p = lm.tokenizer(p, add_special_tokens=True)["input_ids"]
    ids = [int(t) for t in p]
    if not ids:
      raise ValueError("empty prompt")
    V = lm.config.vocab_size
    if min(ids) < 0 or max(ids) >= V:
      raise ValueError(f"prompt {len(out)}: token id outside the vocabulary "
                       f"(0..{V - 1})")
    out.append(ids)
  if not out:
    raise ValueError("no prompts")
  return out


def answer_ids(lm, answer_tokens, n: int) -> np.ndarray:
  """Answer token ids int [N, A]: an int / str (every prompt), or one int,
  str or list of ints per prompt. A str means its first token (tokenized
  without special tokens)."""
  def one(a):
    if isinstance(a, str):
      if lm.tokenizer is None:
        raise ValueError("answers as text need a model with a tokenizer")
      ids = lm.tokenizer(a, add_special_tokens=False)["input_ids"]
      if not ids:
        raise ValueError(f"answer {a!r} has no tokens")
      return [int(ids[0])]
    if _is_int(a):
      return [int(a)]
    return [int(x) for x in a]

  if isinstance(answer_tokens, (str, int, np.integer)):
    rows = [one(answer_tokens)] * n
  else:
    if len(answer_tokens) != n:
      raise ValueError(f"answer_tokens for {len(answer_tokens)} prompts, "
                       f"running {n}")
    rows = [one(a) for a in answer_tokens]
  if len({len(r) for r in rows}) != 1:
    raise ValueError("every prompt needs the same number of answer tokens")
  out = np.asarray(rows, np.int64)
  V = lm.config.vocab_size
  if ((out < 0) | (out >= V)).any():
    raise ValueError(f"answer token outside the vocabulary (0..{V - 1})")
  return out
