"""Tokenizer loading with an on-disk cache.

Building a tokenizer from a GGUF file takes ~20 s (Gemma 3); after the first
build it is saved with ``save_pretrained`` and reloaded from ``tokenizer.json``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from icl_jax.convert import embedded


def _file_key(path: Path) -> str:
  st = path.stat()
  h = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode())
  return h.hexdigest()[:12]


def load_gguf_tokenizer(gguf_path: str | Path, cache_dir: Path | None = None):
  """Loads (and caches) the transformers tokenizer stored in a GGUF file."""
  from transformers import AutoTokenizer

  gguf_path = Path(gguf_path)
  if cache_dir is None:
    cache_dir = (
        embedded.cache_root() / "tokenizers"
        / f"{gguf_path.stem}-{_file_key(gguf_path)}"
    )
  if (cache_dir / "tokenizer_config.json").exists():
    return AutoTokenizer.from_pretrained(str(cache_dir))
  tok = AutoTokenizer.from_pretrained(
      str(gguf_path.parent), gguf_file=gguf_path.name
  )
  cache_dir.mkdir(parents=True, exist_ok=True)
  tok.save_pretrained(str(cache_dir))
  return AutoTokenizer.from_pretrained(str(cache_dir))


def load_tokenizer(name_or_path: str):
  """Tokenizer for an embedded model name, a .gguf file or an HF directory."""
  if embedded.is_embedded_name(name_or_path):
    return load_gguf_tokenizer(embedded.embedded_gguf_path(name_or_path))
  p = Path(name_or_path)
  if p.suffix == ".gguf":
    return load_gguf_tokenizer(p)
  if p.is_dir():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(p))
  raise ValueError(
      f"unknown model {name_or_path!r}: not an embedded name "
      f"({sorted(embedded.EMBEDDED_MODELS)}), a .gguf file or a directory"
  )
