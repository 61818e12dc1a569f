"""icl_jax.analysis.in_process: scripts run one after another in one
process (the report suite's one-process mode)."""

import sys

import jax
import jax.numpy as jnp
import pytest

from icl_jax.analysis import in_process


def test_compiled_programs_are_dropped_only_past_the_mapping_share():
  """One process compiling step after step would pass the kernel's limit
  of memory mappings (each XLA:CPU program holds its own) and abort; the
  step runner drops JAX's compiled programs past a share of that limit."""
  maps = in_process.memory_maps()
  if maps is None:
    pytest.skip("no /proc (not Linux): nothing to measure")
  f = jax.jit(lambda x: jnp.tanh(x) * 3)
  x = jnp.arange(7.0)
  y = f(x)
  before = in_process.memory_maps()[0]
  assert not in_process.drop_programs_if_crowded(share=1.0)
  assert f._cache_size() == 1
  assert in_process.drop_programs_if_crowded(share=0.0)
  assert f._cache_size() == 0  # dropped: the next call compiles again
  assert in_process.memory_maps()[0] <= before
  assert (f(x) == y).all()


@pytest.mark.parametrize("body,rc,text", [
    ("print('py out'); import os; os.write(2, b'fd err')", 0, "fd err"),
    ("raise ValueError('broken step')", 1, "broken step"),
    ("import sys; sys.exit('refused: bad flag')", 1, "refused: bad flag"),
    ("import sys; sys.exit(3)", 3, ""),
])
def test_a_script_runs_with_its_output_on_the_log(tmp_path, body, rc, text,
                                                  capfd):
  script = tmp_path / "step.py"
  script.write_text(body + "\n")
  log = tmp_path / "step.log"
  old_argv = list(sys.argv)
  assert in_process.run_in_process([str(script), "--x=1"], log) == rc
  assert sys.argv == old_argv  # restored
  assert text in log.read_text()
  out, err = capfd.readouterr()
  assert "py out" not in out and "fd err" not in err  # nothing escaped


def test_flags_of_a_script_are_removed_and_the_rest_kept(tmp_path):
  from absl import flags

  script = tmp_path / "flagged.py"
  script.write_text("from absl import flags\n"
                    "flags.DEFINE_integer('in_process_test_n', 3, 'n')\n"
                    "flags.FLAGS(__import__('sys').argv)\n"
                    "assert flags.FLAGS.in_process_test_n == 5\n")
  log = tmp_path / "flagged.log"
  argv = [str(script), "--in_process_test_n=5"]
  before = in_process.flag_names()
  assert in_process.run_in_process(argv, log) == 0, log.read_text()
  assert "in_process_test_n" in flags.FLAGS
  in_process.remove_flags_defined_since(before)
  assert "in_process_test_n" not in flags.FLAGS
  assert set(flags.FLAGS) == before  # the rest kept
  # a second run defines it again (no duplicate-flag error)
  assert in_process.run_in_process(argv, log) == 0, log.read_text()
  in_process.remove_flags_defined_since(before)
