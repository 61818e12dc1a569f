"""run_task_ablations: the modes share a task's prompts, so the second mode
reuses the first's clean continuations; rows equal each mode run alone."""

from __future__ import annotations

import pytest

from tests.conftest import tiny_llama_lm
from icl_jax.interventions.engine import Engine
from icl_jax.studies import ablation, ablation_plans
from icl_jax.studies.run import Study

TASKS = ["uppercase", "antonym"]


@pytest.fixture(scope="module")
def lm():
  return tiny_llama_lm(scale=4.0)


def _run(lm, path, modes):
  study = Study(lm, experiment="zeroing", model=lm.name, config={"t": 1},
                out_dir=str(path), max_new_tokens=4, progress=False)
  plan = ablation_plans.zeroing_plan(
      lm.tokenizer, layers=[0, 1], conditions=["zero_demo", "zero_bos"],
      d_model=lm.config.d_model, n_layers=lm.n_layers, knockout_window=1,
      knockout_generated=True)
  ablation.run_task_ablations(study, tasks=TASKS, modes=modes, n=3,
                              plan=plan)
  return study.rows()


def _strip(row):
  return {k: v for k, v in row.items() if "time" not in k}


def test_modes_share_clean_generations_and_rows_equal_one_mode_runs(
    lm, tmp_path, monkeypatch):
  calls = []
  real = Engine.baseline

  def counted(self, targets):
    calls.append(targets.n)
    return real(self, targets)

  monkeypatch.setattr(Engine, "baseline", counted)
  both = _run(lm, tmp_path / "both", ["faithful", "aligned"])
  assert len(calls) == len(TASKS)  # once per task, not per (mode, task)
  alone = (_run(lm, tmp_path / "f", ["faithful"]) +
           _run(lm, tmp_path / "a", ["aligned"]))
  assert len(calls) == 3 * len(TASKS)
  assert len(both) == len(alone) > 0
  assert {r["mode"] for r in both} == {"faithful", "aligned"}
  key = lambda r: (r["mode"], r["target_task"], r["condition"],
                   str(r["layer"]))
  assert sorted(map(key, both)) == sorted(map(key, alone))
  by_key = {key(r): _strip(r) for r in alone}
  for r in both:
    assert _strip(r) == by_key[key(r)], key(r)


def test_probe_captures_shared_by_modes_give_the_same_rows(lm, tmp_path,
                                                           monkeypatch):
  """exp14 Part C: both modes reuse one capture per task; rows equal runs
  that capture per mode."""
  from icl_jax.studies import single_position as sp

  calls = []
  real = Engine.capture

  def counted(self, *a, **kw):
    calls.append(1)
    return real(self, *a, **kw)

  monkeypatch.setattr(Engine, "capture", counted)

  def run(path, shared):
    study = Study(lm, experiment="probe", model=lm.name, config={"t": 1},
                  out_dir=str(path), key_extra=("k",), progress=False)
    captures = {} if shared else None
    for mode in ("faithful", "aligned"):
      sp.run_probe(study, tasks=TASKS, layers=[0, 1], mode=mode, n=5, k=2,
                   engine=study.engine(), captures=captures)
    return study.rows()

  shared = run(tmp_path / "shared", True)
  assert len(calls) == len(TASKS)
  separate = run(tmp_path / "separate", False)
  assert len(calls) == 3 * len(TASKS)
  assert len(shared) == 4
  assert [_strip(r) for r in shared] == [_strip(r) for r in separate]
