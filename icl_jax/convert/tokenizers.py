"""Tokenizer loading with an on-disk cache, as plain `TokenizersBackend`s.

Building a tokenizer from a GGUF file takes ~20 s (Gemma 3); after the first
build it is saved with ``save_pretrained`` (into a unique temporary folder,
with a manifest of file digests, renamed into place) and reloaded from there.
A damaged cached tokenizer is rebuilt with a warning. No loader runs code
from a checkpoint (``trust_remote_code=False`` everywhere).

Lean form (for the memory of a load, BUILD_NOTES "Conversion memory"):
transformers' model-specific classes such as ``GemmaTokenizer`` and
``Qwen2Tokenizer`` rebuild their Rust tokenizer from Python copies of the
vocabulary and merges, and keep those copies (Gemma 3: 0.15 GiB for 262k
tokens and 515k merges). Where such a class adds nothing but its
``__init__`` and class settings, the tokenizer is stored and returned as a
plain ``TokenizersBackend`` around the very Rust tokenizer that class built
(`lean_tokenizer`), with its settings (special tokens, padding side, input
names, chat template). It is used only if, reloaded from its saved files, it
holds exactly the same Rust tokenizer (its JSON) and the same attributes as
the class's object; otherwise the class's own form is kept, with a warning.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

from icl_jax.convert import digests, embedded

log = logging.getLogger(__name__)

# Class attributes of a tokenizer class that change what it returns; passed
# to the plain class as settings (saved in tokenizer_config.json).
_CLASS_SETTINGS = ("padding_side", "truncation_side", "model_input_names")
# Class attributes that only say how the class reads or converts its files.
_FILE_ATTRS = {"vocab_files_names", "model", "slow_tokenizer_class",
               "pretrained_vocab_files_map", "max_model_input_sizes"}
# Instance attributes allowed to differ between the two forms: the class's
# Python copies of the vocabulary and merges, the folder it was read from.
_COPIES = {"_vocab", "_merges", "name_or_path", "init_kwargs", "_tokenizer"}


def _auto_tokenizer(*args, **kwargs):
  from transformers import AutoTokenizer

  return AutoTokenizer.from_pretrained(*args, trust_remote_code=False,
                                       **kwargs)


def _backend_class():
  from transformers.tokenization_utils_tokenizers import TokenizersBackend

  return TokenizersBackend


def _only_settings(cls, base) -> bool:
  """True if `cls` derives directly from `base` and defines no method but
  ``__init__``: the plain class then behaves as it does, given its backend
  and settings."""
  if cls.__bases__ != (base,):
    return False
  for name, value in vars(cls).items():
    if name.startswith("__") or name in _FILE_ATTRS or name in _CLASS_SETTINGS:
      continue
    if callable(value) or isinstance(value, (property, staticmethod,
                                             classmethod)):
      return False
  return True


def lean_tokenizer(tok):
  """`tok` as a plain `TokenizersBackend` around a copy of its own Rust
  tokenizer (see the module docstring), or `tok` itself where its class does
  more than set up that tokenizer. Check the result with `same_tokenizer`."""
  base = _backend_class()
  if type(tok) is base or not isinstance(tok, base) or not _only_settings(
      type(tok), base):
    return tok
  kwargs = dict(tok.init_kwargs)
  kwargs.update({k: getattr(tok, k) for k in _CLASS_SETTINGS})
  kwargs["model_input_names"] = list(kwargs["model_input_names"])
  # Without the folder: the backend is taken as it is (transformers would
  # look for a config.json there, to decide on patching a Mistral regex
  # that the class has already decided on).
  name = kwargs.pop("name_or_path", "")
  lean = base(tokenizer_object=tok.backend_tokenizer, **kwargs)
  lean.name_or_path = name
  return lean


def _settings(tok) -> dict:
  # init_kwargs (what save_pretrained writes) without the class settings,
  # the folder and unset file names (`vocab_file=None` after a read).
  init = {k: v for k, v in tok.init_kwargs.items()
          if k not in _CLASS_SETTINGS and k != "name_or_path"
          and not (k.endswith("_file") and v is None)}
  out = {k: repr(v) for k, v in vars(tok).items() if k not in _COPIES}
  out["init_kwargs"] = repr(sorted(init.items()))
  return out


def same_tokenizer(a, b) -> str | None:
  """None if `a` and `b` hold the same Rust tokenizer (equal JSON) and the
  same attributes (besides the Python copies of a model-specific class and
  the folder they were read from), else what differs."""
  if a.backend_tokenizer.to_str() != b.backend_tokenizer.to_str():
    return "the Rust tokenizers differ"
  sa, sb = _settings(a), _settings(b)
  diff = sorted(k for k in sa.keys() | sb.keys() if sa.get(k) != sb.get(k))
  return f"attributes differ: {diff}" if diff else None


def _read(d: Path):
  """The tokenizer saved in folder `d`, in lean form (an older cache that
  holds a model-specific class is converted on reading)."""
  tok = _auto_tokenizer(str(d))
  lean = lean_tokenizer(tok)
  return lean if lean is tok or same_tokenizer(tok, lean) is None else tok


def read_tokenizer_dir(d: str | Path):
  """A tokenizer saved with `save_pretrained` (e.g. a converted-model
  cache's), in lean form where that is exact."""
  return _read(Path(d))


def _save_lean(tok, out: Path) -> None:
  """Saves `tok` into the new folder `out` in lean form if, read back, it is
  the same tokenizer (`same_tokenizer`), else in its own form (warning)."""
  lean = lean_tokenizer(tok)
  if lean is not tok:
    with tempfile.TemporaryDirectory(dir=out.parent) as t:
      lean.save_pretrained(t)
      problem = same_tokenizer(tok, _auto_tokenizer(t))
    if problem is None:
      tok = lean
    else:
      msg = (f"{type(tok).__name__}: its plain TokenizersBackend form is not "
             f"the same tokenizer ({problem}); keeping the class's own form")
      log.warning(msg)
      warnings.warn(msg, UserWarning, stacklevel=3)
  del lean
  tok.save_pretrained(str(out))


def _cached(cache_dir: Path):
  """The cached tokenizer, or None (absent, or damaged: with a warning)."""
  if not cache_dir.exists():
    return None
  try:
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    problem = digests.check_manifest(cache_dir, manifest)
  except (OSError, ValueError) as e:
    problem = f"no readable manifest.json ({e})"
  if problem is None:
    try:
      return _read(cache_dir)
    except Exception as e:  # any read error: rebuild
      problem = f"loading failed ({type(e).__name__}: {e})"
  msg = f"cached tokenizer {cache_dir} is damaged: {problem}; rebuilding it"
  log.warning(msg)
  warnings.warn(msg, UserWarning, stacklevel=3)
  digests.discard_dir(cache_dir)
  return None


def load_gguf_tokenizer(gguf_path: str | Path, cache_dir: Path | None = None):
  """Loads (and caches) the transformers tokenizer stored in a GGUF file."""
  gguf_path = Path(gguf_path)
  if cache_dir is None:
    key = digests.sha256_of(gguf_path)[:16]
    cache_dir = embedded.cache_root() / "tokenizers" / f"{gguf_path.stem}-{key}"
  tok = _cached(cache_dir)
  if tok is not None:
    return tok
  try:
    tok = _auto_tokenizer(str(gguf_path.parent), gguf_file=gguf_path.name)
  except Exception as e:
    from icl_jax.convert.streaming import CheckpointError

    raise CheckpointError(f"{gguf_path}: cannot read the tokenizer "
                          f"({type(e).__name__}: {e})") from e
  tmp = digests.new_temp_dir(cache_dir)
  try:
    # The tokenizer as its class reads it back from its saved files (what
    # every later load returns), then saved in lean form where exact.
    with tempfile.TemporaryDirectory(dir=tmp.parent) as t:
      tok.save_pretrained(t)
      del tok
      tok = _auto_tokenizer(t)
    _save_lean(tok, tmp)
    del tok
    (tmp / "manifest.json").write_text(json.dumps(digests.dir_manifest(tmp)))
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  digests.publish_dir(tmp, cache_dir,
                      existing_ok=lambda p: _cached(p) is not None)
  return _read(cache_dir)


def load_tokenizer(name_or_path: str):
  """Tokenizer for an embedded model name, a .gguf file or an HF directory."""
  if embedded.is_embedded_name(name_or_path):
    return load_gguf_tokenizer(embedded.embedded_gguf_path(name_or_path))
  p = Path(name_or_path)
  if p.suffix == ".gguf":
    return load_gguf_tokenizer(p)
  if p.is_dir():
    return _read(p)
  raise ValueError(
      f"unknown model {name_or_path!r}: not an embedded name "
      f"({sorted(embedded.EMBEDDED_MODELS)}), a .gguf file or a directory"
  )
