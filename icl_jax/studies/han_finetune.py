"""Han et al.'s early- vs late-layer finetuning and prompting arms (spec
`han_task_vectors.md` sections 6-7; their Table 1) for our models.

Arms, per family:
  pretrained  the model as converted;
  ft_first    LoRA (rank 16, alpha 16, dropout 0.1; q k v o gate up down)
              on the first third of the blocks (floor(L/3); Han: 10 of 32),
              trained on mixed-task 4-shot prompts of the train split;
  ft_last     the same on the last third;
  prompting   the pretrained model with the task named in the prompt (an
              instruction line before the demos, `instruction`).
Each arm: 4-shot exact-match accuracy per task on eval prompts (greedy,
first line) and TD_z at `layer` (leave-one-out kNN, k = 10, Euclidean,
over the final-token residuals of `n_eval` prompts per class, Null
included as a class; `probes.knn_td`, as `studies.han_td`). Table 1 = the means and
stds over the six tasks.

Training data [ASSUMPTIONS, spec section 6]: `n_train` prompts (10,000 in
the full protocol), an equal share per task, Null excluded (the paper does
not say; Null's random answers cannot be learned); 4 demos each, all from
the train split (the query's input never among its demos); loss on the
answer tokens only, of every demonstration and of the query ("ŷ_i" in the
plural; `loss_on="query"` keeps the query's only); AdamW (lr 1e-4 default,
weight decay 0), one pass over the data (steps = n_train / batch), batches
reshuffled by seed.

Rows (DESIGN.md format): condition = arm, source_task = target_task =
task, layer = the TD layer, with family, accuracy, td, n, examples.
"""

from __future__ import annotations

import math

import numpy as np

from icl_jax.interventions.distributed import is_primary

EXPERIMENT = "han_finetune"
ARMS = ("pretrained", "ft_first", "ft_last", "prompting")
# Han et al.'s Table 1 (Llama-3.1-8B; mean +- std over the 6 tasks):
# (TD, accuracy %) per family and arm.
HAN_TABLE1 = {
    "pos": {"pretrained": ((0.68, 0.11), (25.5, 6.7)),
            "ft_first": ((0.95, 0.02), (69.4, 14.2)),
            "ft_last": ((0.68, 0.11), (33.9, 12.3)),
            "prompting": ((0.97, 0.02), (34.4, 10.3))},
    "bitwise": {"pretrained": ((0.43, 0.13), (26.2, 15.5)),
                "ft_first": ((0.85, 0.11), (90.2, 15.0)),
                "ft_last": ((0.43, 0.13), (66.3, 9.01)),
                "prompting": ((0.90, 0.10), (57.2, 30.1))}}


def instruction(family: str, task: str) -> str:
  """The prompting arm's first line naming the task [ASSUMPTION: wording;
  spec section 7 gives "AND" / "Find the first noun in the sentence"]."""
  if family == "bitwise":
    if task == "null":
      return "Output five random binary digits.\n"
    return f"Apply bitwise {task.upper()} to the two binary numbers.\n"
  if task == "null":
    return "Output a random word of the sentence.\n"
  return f"Find the first {task} in the sentence.\n"


def answer_spans(family: str, prompt: str, answer: str, loss_on: str):
  """Character spans [(start, end)] of the scored answers in
  prompt + " " + answer."""
  from icl_jax.studies.han_task_vectors import parse_arrow_prompt

  q = (len(prompt) + 1, len(prompt) + 1 + len(answer))
  if loss_on == "query":
    return [q]
  spec = parse_arrow_prompt(family, prompt)
  return [(s.start, s.end) for s in spec.spans
          if s.role == "output_value" and s.demo is not None] + [q]


def training_example(tokenizer, family, prompt, answer, loss_on):
  """(ids int [T], pos int [A], tgt int [A]): position t predicts ids[t+1],
  an answer token (its first non-space character inside an answer span)."""
  from icl_jax.tasks import offsets

  text = prompt + " " + answer
  enc = offsets.encode(tokenizer, text)
  spans = answer_spans(family, prompt, answer, loss_on)
  scored = []
  for i in range(1, len(enc.ids)):
    if enc.special[i]:
      continue
    s, e = int(enc.starts[i]), int(enc.ends[i])
    c = next((j for j in range(s, e) if not text[j].isspace()), s)
    if any(a <= c < b for a, b in spans):
      scored.append(i)
  ids = np.asarray(enc.ids, np.int32)
  pos = np.asarray(scored, np.int32) - 1
  return ids, pos, ids[pos + 1]


def training_set(lm, family, n_train, shots, seed, loss_on) -> list:
  """[(ids, pos, tgt)]: mixed-task prompts (Null excluded), an equal share
  of n_train per task (rounded up)."""
  from icl_jax.tasks import han

  tasks = han.family_tasks(family)[:-1]
  per = math.ceil(n_train / len(tasks))
  out = []
  for t in tasks:
    for p, a in han.prompts(family, t, per, shots, 20_000 + seed,
                            split="train"):
      out.append(training_example(lm.tokenizer, family, p, a, loss_on))
  return out  # ceil(n_train / 6) per task: n_train rounded up


def batch_fn(examples, batch_size: int, seed: int, pad_id: int):
  """step -> batch dict (`finetune.train`), fixed shapes: [B, T_max] tokens
  (left-padded), [B, A_max] scored positions; epoch e is a seeded shuffle."""
  T = -(-max(len(x[0]) for x in examples) // 8) * 8
  A = max(len(x[1]) for x in examples)
  n = len(examples)
  per_epoch = max(1, n // batch_size)

  def get(step: int) -> dict:
    epoch, k = divmod(step, per_epoch)
    order = np.random.RandomState(seed + epoch).permutation(n)
    rows = [examples[i] for i in order[k * batch_size:(k + 1) * batch_size]]
    b = {"tokens": np.full((batch_size, T), pad_id, np.int32),
         "mask": np.zeros((batch_size, T), np.int32),
         "pos": np.zeros((batch_size, A), np.int32),
         "tgt": np.zeros((batch_size, A), np.int32),
         "w": np.zeros((batch_size, A), np.float32)}
    for r, (ids, pos, tgt) in enumerate(rows):
      off = T - len(ids)
      b["tokens"][r, off:] = ids
      b["mask"][r, off:] = 1
      b["pos"][r, :len(pos)] = pos + off
      b["tgt"][r, :len(pos)] = tgt
      b["w"][r, :len(pos)] = 1.0
    return b

  return get, {"seq_len": T, "answer_tokens_max": A,
               "steps_per_epoch": per_epoch}


def evaluate_arm(lm, family, arm, layer, *, n_eval, shots, seed,
                 max_new_tokens, batch_size, knn=10):
  """Rows per task (Null excluded) of one arm: 4-shot accuracy and TD_z at
  `layer` (Null a class of the kNN set)."""
  import icl_jax
  from icl_jax.probes import knn_td
  from icl_jax.tasks import han

  tasks = han.family_tasks(family)
  prompts, answers, labels = [], [], []
  for c, t in enumerate(tasks):
    for p, a in han.prompts(family, t, n_eval, shots, seed, split="eval"):
      prompts.append((instruction(family, t) if arm == "prompting" else "")
                     + p)
      answers.append(a)
      labels.append(c)
  labels = np.asarray(labels)
  acts = icl_jax.capture(lm, prompts, layers=[layer], batch_size=batch_size)
  feats = np.stack([v[0] for v in acts.values(layer, [-1])])  # [M, D]
  td = np.asarray(knn_td.class_td(feats, labels, len(tasks), knn))  # [C]
  keep = [i for i, c in enumerate(labels) if tasks[c] != "null"]
  res = icl_jax.run_patches(lm, [prompts[i] for i in keep],
                            [icl_jax.Patch.clean()],
                            max_new_tokens=max_new_tokens)
  outs = dict(zip(keep, res.texts[0]))
  rows = []
  for c, t in enumerate(tasks[:-1]):
    idx = [i for i in keep if labels[i] == c]
    ok = [han.score(family, outs[i], answers[i]) for i in idx]
    rows.append({
        "experiment": EXPERIMENT, "mode": "aligned", "family": family,
        "source_task": t, "target_task": t, "layer": layer,
        "condition": arm, "n": len(idx), "accuracy": float(np.mean(ok)),
        "td": float(td[c]), "td_null": float(td[-1]), "shots": shots,
        "examples": [{"query": prompts[i].rsplit("\n", 1)[-1],
                      "output": outs[i], "expected_target": answers[i]}
                     for i in idx]})
  return rows


def finetune(lm, run_path, family, arm, *, n_train, shots, batch_size, lr,
             weight_decay, rank, alpha, dropout, epochs, steps, seed,
             loss_on, ckpt_every, progress):
  """(the finetuned LanguageModel, training info) for arm ft_first /
  ft_last; training resumes from <run>/lora_<family>_<arm>/checkpoints."""
  import json
  import time

  from icl_jax.finetune import lora, train
  from icl_jax.models.lm import LanguageModel

  t0 = time.time()
  which = arm.split("_", 1)[1]
  lcfg = lora.LoraConfig(layers=lora.layer_thirds(lm.n_layers)[which],
                         rank=rank, alpha=alpha, dropout=dropout)
  examples = training_set(lm, family, n_train, shots, seed, loss_on)
  get, shapes = batch_fn(examples, batch_size, seed, lm.pad_id)
  total = steps or epochs * shapes["steps_per_epoch"]
  run_dir = run_path / f"lora_{family}_{arm}"
  res = train.train(lm.config, lm.params, lcfg, get, steps=total, lr=lr,
                    weight_decay=weight_decay, run_dir=run_dir, seed=seed,
                    ckpt_every=ckpt_every, progress=progress)
  log = json.loads((run_dir / "train_log.json").read_text())
  info = {"layers": list(lcfg.layers), "rank": rank, "alpha": alpha,
          "dropout": dropout, "n_examples": len(examples), "steps": total,
          "batch_size": batch_size, "lr": lr, **shapes,
          "seconds_this_call": time.time() - t0,
          "seconds_per_step": res["seconds_per_step"],
          "resumed_from": res["resumed_from"],
          "loss_first": log[0]["loss"] if log else None,
          "loss_last_10": (float(np.mean([e["loss"] for e in log[-10:]]))
                           if log else None)}
  prev = run_dir / "info.json"
  if prev.exists() and res["seconds_per_step"] is None:
    info = json.loads(prev.read_text())  # training finished earlier
  if is_primary():  # jax.distributed: process 0 writes files
    prev.write_text(json.dumps(info, indent=1))
  merged = lora.merge(lm.params, res["adapter"], lcfg)
  return LanguageModel(lm.config, merged, lm.tokenizer,
                       name=f"{lm.name}+lora_{arm}",
                       hf_config=lm.hf_config), info


def table1(rows, families, arms) -> dict:
  """{family: {arm: {td, td_std, acc, acc_std, n_tasks}}} (over tasks)."""
  out = {}
  for f in families:
    for a in arms:
      rs = [r for r in rows if r.get("family") == f and r["condition"] == a]
      if rs:
        td = [r["td"] for r in rs]
        acc = [100 * r["accuracy"] for r in rs]
        out.setdefault(f, {})[a] = {
            "td": float(np.mean(td)), "td_std": float(np.std(td)),
            "acc": float(np.mean(acc)), "acc_std": float(np.std(acc)),
            "n_tasks": len(rs), "layer": rs[0]["layer"],
            "per_task": {r["target_task"]: {"td": r["td"],
                                            "accuracy": r["accuracy"]}
                         for r in rs}}
  return out


def table1_markdown(t: dict, model: str) -> str:
  """Han's Table 1 layout: ours beside theirs (Llama-3.1-8B)."""
  lines = [f"| condition | family | TD ({model}) | acc % ({model}) | "
           "TD (Han, Llama-3.1-8B) | acc % (Han) |", "|---" * 6 + "|"]
  for f, arms in t.items():
    for a, v in arms.items():
      (ht, hts), (ha, has) = HAN_TABLE1[f][a]
      lines.append(f"| {a} | {f} | {v['td']:.2f} ± {v['td_std']:.2f} | "
                   f"{v['acc']:.1f} ± {v['acc_std']:.1f} | {ht:.2f} ± "
                   f"{hts:.2f} | {ha:.1f} ± {has:.1f} |")
  return "\n".join(lines) + "\n"


def plot_table1(t: dict, path, model: str) -> None:
  """Bars: mean TD and accuracy per arm and family (+- std over tasks)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  fams = list(t)
  for ax, key, lab in ((axes[0], "td", "mean TD_z at the TD layer"),
                       (axes[1], "acc", "4-shot accuracy (%)")):
    arms = [a for a in ARMS if any(a in t[f] for f in fams)]
    w = 0.8 / max(1, len(arms))
    for j, a in enumerate(arms):
      x = np.arange(len(fams)) + (j - (len(arms) - 1) / 2) * w
      ax.bar(x, [t[f].get(a, {}).get(key, np.nan) for f in fams], w,
             yerr=[t[f].get(a, {}).get(key + "_std", 0) for f in fams],
             capsize=2, label=a)
    ax.set_xticks(np.arange(len(fams)), fams)
    ax.set_ylabel(lab)
  axes[1].legend(fontsize=8)
  fig.suptitle(f"{model}: Han et al. Table 1 (mean +- std over tasks)")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def run(lm, *, model, families, arms, layers: dict, n_train, n_eval, shots,
        batch_size, lr, weight_decay=0.0, rank=16, alpha=16.0, dropout=0.1,
        epochs=1, steps=None, seed=0, loss_on="all_answers", out_dir="runs",
        max_new_tokens=8, ckpt_every=50, eval_batch_size=16, progress=True):
  """Trains and evaluates every pending (family, arm); writes summary.json,
  table1.md and table1.png. Returns (rows, Table 1 dict)."""
  import json

  from icl_jax.studies.run import Study
  from icl_jax.tasks import han

  config = dict(model=model, families=list(families), arms=list(arms),
                layers=layers, n_train=n_train, n_eval=n_eval, shots=shots,
                batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                rank=rank, alpha=alpha, dropout=dropout, epochs=epochs,
                steps=steps, seed=seed, loss_on=loss_on,
                max_new_tokens=max_new_tokens)
  # A later run may add families or arms to the directory (their rows are
  # keyed by task and condition).
  study = Study(lm, experiment=EXPERIMENT, model=model, config=config,
                out_dir=out_dir, max_new_tokens=max_new_tokens,
                progress=progress, growable=("families", "layers", "arms"))
  todo = []
  for f in families:
    for a in arms:
      keys = [study.key(mode="aligned", source_task=t, target_task=t,
                        layer=layers[f], condition=a)
              for t in han.family_tasks(f)[:-1]]
      if study.pending(keys):
        todo.append((f, a))
  study.start(len(todo), "arm")
  for f, a in todo:
    lm_arm = lm
    if a.startswith("ft_"):
      lm_arm, _ = finetune(
          lm, study.path, f, a, n_train=n_train, shots=shots,
          batch_size=batch_size, lr=lr, weight_decay=weight_decay,
          rank=rank, alpha=alpha, dropout=dropout, epochs=epochs,
          steps=steps, seed=seed, loss_on=loss_on, ckpt_every=ckpt_every,
          progress=progress)
    rows = evaluate_arm(lm_arm, f, a, layers[f], n_eval=n_eval, shots=shots,
                        seed=seed, max_new_tokens=max_new_tokens,
                        batch_size=eval_batch_size)
    study.add([dict(r, model=model) for r in rows])
    study.tick(note=f"{f}/{a}")
  # Table 1 and the training record: with earlier runs' families and arms.
  all_families, all_arms = study.config["families"], study.config["arms"]
  t = table1(study.rows(), all_families, all_arms)
  if is_primary():  # jax.distributed: process 0 writes files
    (study.path / "table1.md").write_text(table1_markdown(t, model))
  if t:
    plot_table1(t, study.path / "table1.png", model)
  training = {}
  for f in all_families:
    for a in all_arms:
      p = study.path / f"lora_{f}_{a}" / "info.json"
      if p.exists():
        training[f"{f}/{a}"] = json.loads(p.read_text())
  study.finish({"results": t, "training": training,
                "han_table1_llama_3_1_8b": HAN_TABLE1})
  return study.rows(), t
