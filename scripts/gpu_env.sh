# Sourced by the GPU scripts (gpu_suite.sh, gpu_synthetic.sh): writes
# $OUT/gpu_env.txt (date, nvidia-smi, jax versions, backend, devices and
# their memory) with $PY, prints it, sets BACKEND, and exits 2 unless the
# JAX backend is a GPU (ALLOW_CPU=1: a dry run on a CPU).
{
  date -u
  nvidia-smi 2>&1 || echo "nvidia-smi: not available"
  "$PY" -c 'import jax, jaxlib, icl_jax; print("jax", jax.__version__, "jaxlib", jaxlib.__version__, "icl_jax", icl_jax.__version__); print("backend", jax.default_backend()); print("devices", jax.devices()); [print(d, d.memory_stats() and {k: v for k, v in d.memory_stats().items() if k in ("bytes_limit", "bytes_in_use")}) for d in jax.local_devices()]' 2>&1
} > "$OUT/gpu_env.txt"
cat "$OUT/gpu_env.txt"
BACKEND=$(grep '^backend ' "$OUT/gpu_env.txt" | cut -d' ' -f2)
if [[ "$BACKEND" != "gpu" && "${ALLOW_CPU:-0}" != 1 ]]; then
  echo "JAX backend is '${BACKEND:-unknown}', not gpu: install jax with CUDA" \
       "support (pip install -U 'jax[cuda12]'), or ALLOW_CPU=1" >&2
  exit 2
fi
