"""Tokenizer loading with an on-disk cache.

Building a tokenizer from a GGUF file takes ~20 s (Gemma 3); after the first
build it is saved with ``save_pretrained`` (into a unique temporary folder,
with a manifest of file digests, renamed into place) and reloaded from there.
A damaged cached tokenizer is rebuilt with a warning. No loader runs code
from a checkpoint (``trust_remote_code=False`` everywhere).
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

from icl_jax.convert import digests, embedded

log = logging.getLogger(__name__)


def _auto_tokenizer(*args, **kwargs):
  from transformers import AutoTokenizer

  return AutoTokenizer.from_pretrained(*args, trust_remote_code=False,
                                       **kwargs)


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
      return _auto_tokenizer(str(cache_dir))
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
    tok.save_pretrained(str(tmp))
    (tmp / "manifest.json").write_text(json.dumps(digests.dir_manifest(tmp)))
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  digests.publish_dir(tmp, cache_dir,
                      existing_ok=lambda p: _cached(p) is not None)
  return _auto_tokenizer(str(cache_dir))


def load_tokenizer(name_or_path: str):
  """Tokenizer for an embedded model name, a .gguf file or an HF directory."""
  if embedded.is_embedded_name(name_or_path):
    return load_gguf_tokenizer(embedded.embedded_gguf_path(name_or_path))
  p = Path(name_or_path)
  if p.suffix == ".gguf":
    return load_gguf_tokenizer(p)
  if p.is_dir():
    return _auto_tokenizer(str(p))
  raise ValueError(
      f"unknown model {name_or_path!r}: not an embedded name "
      f"({sorted(embedded.EMBEDDED_MODELS)}), a .gguf file or a directory"
  )
