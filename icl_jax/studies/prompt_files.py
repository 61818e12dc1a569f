r"""User prompt files for `experiments/sweep.py`.

Two formats, chosen by the file extension.

**.txt -- one prompt per line, spans marked** (blank lines and lines
starting with "#" are skipped):

    Input: {{apple}}\nOutput: [[APPLE]]\n\nInput: {{brain}}\nOutput: [[BRAIN]]\n\nInput: <<honey>>\nOutput:<TAB>HONEY<TAB>honey honey

  [[y]]   a demo answer (required; one per demo, in order). Demo k's span
          ends at its answer; the whitespace right after it is demo k's
          separator.
  {{x}}   that demo's input (optional; must come before its answer).
  <<q>>   the query input (optional; after the last demo answer).
  \n \t \\  escapes for newline, tab and backslash inside the prompt.
  TAB     optional columns after the prompt: the expected target answer(s),
          then the answer(s) that would count as "transfer" (what the
          source behaviour gives on this query); alternatives separated by
          " || ".

Text between demo k-1's answer (after its separator whitespace) and demo
k's input is demo k's "input_label" (e.g. "Input: "); between the input and
the answer, leading whitespace is the "newline" and the rest the
"output_label" (e.g. "Output: "); text after the last demo before <<q>> is
the "query_label", after <<q>> the "final_output_label". Without {{x}} the
whole text before the answer is the demo's "output_label". These are the
roles of `icl_jax.tasks.prompts`, so every aligned position set works
(all_demo, output_only = the marked answers, input_values = the marked
inputs, ...).

**.jsonl -- one JSON object per line**:

    {"demos": [["apple", "APPLE"], ["brain", "BRAIN"]], "query": "honey",
     "answer": "HONEY", "source_answer": ["honey honey"]}

built with the study's format (or `--prompt_format=arrow`); "answer" and
"source_answer" are optional strings or lists.

Faithful mode applies the study's line-based index formula to the prompt
text, which only finds positions in "Input:"/"Output:" lines; aligned mode
uses the spans above.

Also here: `resolve_side` (a sweep side: a task name or a prompt file),
`reformat_setup` (task episodes in another prompt format) and `file_digest`
(the content hash a sweep's configuration records).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from icl_jax.tasks.prompts import (STUDY_FORMAT, PromptFormat, PromptSpec,
                                   Span, build_prompt)

FILE_FORMAT = PromptFormat(name="file")
_MARK = re.compile(r"\{\{(.*?)\}\}|\[\[(.*?)\]\]|<<(.*?)>>", re.S)


class PromptFileError(ValueError):
  pass


@dataclasses.dataclass(frozen=True)
class FilePrompt:
  """A prompt from a file, usable wherever a task Episode is."""

  spec: PromptSpec
  answers: tuple[str, ...] = ()
  expected_source: tuple[str, ...] = ()
  task: str = "file"
  line: int = 0

  @property
  def query(self) -> str:
    return self.spec.query

  @property
  def demos(self):
    return self.spec.demos

  @property
  def expected(self):
    return self.answers[0] if self.answers else None

  def prompt(self, fmt=None) -> PromptSpec:
    del fmt
    return self.spec


def _unescape(s: str) -> str:
  out, i = [], 0
  while i < len(s):
    if s[i] == "\\" and i + 1 < len(s):
      out.append({"n": "\n", "t": "\t", "\\": "\\"}.get(s[i + 1],
                                                        "\\" + s[i + 1]))
      i += 2
    else:
      out.append(s[i])
      i += 1
  return "".join(out)


def _alternatives(col: str) -> tuple[str, ...]:
  return tuple(a.strip() for a in _unescape(col).split(" || ") if a.strip())


def _mark_parts(raw: str) -> list[tuple[str, str]]:
  """A .txt prompt column -> [(kind, string)], kind "text" | "in" | "out" |
  "query" (escapes resolved)."""
  parts, pos = [], 0
  for m in _MARK.finditer(raw):
    if m.start() > pos:
      parts.append(("text", _unescape(raw[pos:m.start()])))
    kind = "in" if m.group(1) is not None else (
        "out" if m.group(2) is not None else "query")
    parts.append((kind, _unescape(next(g for g in m.groups()
                                       if g is not None))))
    pos = m.end()
  if pos < len(raw):
    parts.append(("text", _unescape(raw[pos:])))
  return parts


class _SpanBuilder:
  """The prompt text and its role spans, built part by part."""

  def __init__(self, where: str):
    """`where`: the line prefix of error messages."""
    self.where = where
    self.spans, self.text = [], ""
    self.demos: list[list] = []
    self.demo = 0  # index of the demo being built
    self.pending_in = None
    self.query = ""
    self.seen_query = False
    self.lead = ""  # a label's trailing spaces go to the value after it

  def add(self, role, d, s):
    """Appends s as a span of `role` (demo d); empty strings add nothing."""
    if s:
      self.spans.append(Span(role, d, len(self.text), len(self.text) + len(s),
                             s))
      self.text += s

  def take_lead(self, s):
    """s without its trailing spaces, which go to the next value."""
    stripped = s.rstrip(" ")
    self.lead = s[len(stripped):]
    return stripped

  def marked(self, kind: str, s: str, value: str):
    """A marked value: the query, a demo input or a demo answer."""
    where = self.where
    if kind == "query":
      if self.seen_query:
        raise PromptFileError(f"{where}more than one <<query>>")
      self.seen_query = True
      self.query = s
      self.add("query_value", None, value)
    elif kind == "in":
      if self.seen_query:
        raise PromptFileError(f"{where}demo input after the query")
      if self.pending_in is not None:
        raise PromptFileError(f"{where}two {{{{inputs}}}} without an answer "
                              "between them")
      self.pending_in = s
      self.add("input_value", self.demo, value)
    else:  # "out"
      if self.seen_query:
        raise PromptFileError(f"{where}demo answer after the query")
      self.add("output_value", self.demo, value)
      self.demos.append([self.pending_in if self.pending_in is not None
                         else "", s])
      self.pending_in = None
      self.demo += 1

  def free_text(self, s: str, nxt: str | None):
    """Free text: its role depends on the kind of the next part."""
    demo = self.demo
    if self.seen_query:
      self.add("final_output_label", None, s)
    elif nxt == "in":
      self.add("input_label", demo, self.take_lead(s))
    elif nxt == "out":
      s = self.take_lead(s)
      if self.pending_in is not None:
        ws = len(s) - len(s.lstrip())
        self.add("newline", demo, s[:ws])
        self.add("output_label", demo, s[ws:])
      else:
        self.add("output_label", demo, s)
    elif nxt == "query":
      self.add("query_label", None, self.take_lead(s))
    else:  # trailing text after the last demo, no query marker
      self.add("final_output_label", None, s)


def parse_marked(line: str, lineno: int = 0) -> tuple[PromptSpec, tuple,
                                                       tuple]:
  """One .txt line -> (spec, target answers, source answers)."""
  cols = line.rstrip("\n").split("\t")
  raw = cols[0]
  answers = _alternatives(cols[1]) if len(cols) > 1 else ()
  src = _alternatives(cols[2]) if len(cols) > 2 else ()
  where = f"line {lineno}: " if lineno else ""
  parts = _mark_parts(raw)
  if not any(k == "out" for k, _ in parts):
    raise PromptFileError(f"{where}no demo answer marked with [[...]]")
  b = _SpanBuilder(where)
  for i, (kind, s) in enumerate(parts):
    value = b.lead + s if kind != "text" else s
    b.lead = ""
    if kind == "text":
      b.free_text(s, parts[i + 1][0] if i + 1 < len(parts) else None)
      continue
    b.marked(kind, s, value)
    # the whitespace right after an answer is this demo's separator
    if kind == "out" and i + 1 < len(parts) and parts[i + 1][0] == "text":
      nxt = parts[i + 1][1]
      ws = len(nxt) - len(nxt.lstrip())
      b.add("demo_separator", b.demo - 1, nxt[:ws])
      parts[i + 1] = ("text", nxt[ws:])
  if not b.text:
    raise PromptFileError(f"{where}empty prompt")
  spec = PromptSpec(text=b.text, spans=tuple(b.spans),
                    demos=tuple((x, y) for x, y in b.demos), query=b.query,
                    fmt=FILE_FORMAT)
  return spec, answers, src


def _field_error(where: str, field: str, v, want: str) -> PromptFileError:
  got = json.dumps(v) if not isinstance(v, str) else repr(v)
  if len(got) > 60:
    got = got[:57] + "..."
  hint = (f' (write it as a JSON string: "{v}")'
          if isinstance(v, (int, float)) and not isinstance(v, bool) else "")
  return PromptFileError(f'{where}: field "{field}" must be {want}, got '
                         f"{type(v).__name__} {got}{hint}")


def _as_tuple(v, where: str = "", field: str = "answer") -> tuple[str, ...]:
  """An optional answer field: absent/null, a string or a list of strings."""
  if v is None:
    return ()
  if isinstance(v, str):
    return (v,)
  if isinstance(v, list) and all(isinstance(x, str) for x in v):
    return tuple(v)
  raise _field_error(where, field, v, "a string or a list of strings")


def _parse_jsonl_line(line: str, where: str) -> tuple[list, str, dict]:
  """One .jsonl line -> (demos [(x, y)], query, the object)."""
  try:
    obj = json.loads(line)
  except json.JSONDecodeError as e:
    raise PromptFileError(f"{where}: not a JSON object ({e}); expected "
                          '{"demos": [[x, y], ...], "query": q}') from None
  if not isinstance(obj, dict):
    raise PromptFileError(f"{where}: expected a JSON object "
                          '{"demos": [[x, y], ...], "query": q}, got '
                          f"{type(obj).__name__}")
  for field in ("demos", "query"):
    if field not in obj:
      raise PromptFileError(f'{where}: field "{field}" is missing; expected '
                            '{"demos": [[x, y], ...], "query": q}')
  raw = obj["demos"]
  if not isinstance(raw, list):
    raise _field_error(where, "demos", raw, "a list of [input, answer] "
                       "pairs")
  demos = []
  for i, d in enumerate(raw):
    if (not isinstance(d, list) or len(d) != 2
        or not all(isinstance(x, str) for x in d)):
      raise _field_error(where, f"demos[{i}]", d,
                         "an [input, answer] pair of strings")
    demos.append((d[0], d[1]))
  if not demos:
    raise PromptFileError(f'{where}: field "demos" is empty (no demos)')
  if not isinstance(obj["query"], str):
    raise _field_error(where, "query", obj["query"], "a string")
  return demos, obj["query"], obj


def _read_text(p: Path) -> str:
  """The file as UTF-8 text; a binary or mis-encoded file is refused."""
  try:
    data = p.read_bytes()
  except OSError as e:
    raise PromptFileError(f"prompt file {p}: cannot be read ({e})") from None
  if b"\x00" in data:
    raise PromptFileError(f"prompt file {p} is binary (contains NUL bytes), "
                          "not a UTF-8 text prompt file")
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    line = data[:e.start].count(b"\n") + 1
    raise PromptFileError(
        f"prompt file {p} is not UTF-8 text (byte {e.start}, line {line}: "
        f"{e.reason}); save it as UTF-8") from None


def load_prompt_file(path, fmt: PromptFormat = STUDY_FORMAT,
                     name: str | None = None) -> list[FilePrompt]:
  """Reads a .txt (marked) or .jsonl prompt file; raises PromptFileError
  naming the file (and the line and field where one is at fault)."""
  p = Path(path)
  if not p.exists():
    raise PromptFileError(f"prompt file {p} does not exist")
  if p.is_dir():
    raise PromptFileError(f"prompt file {p} is a directory")
  if p.suffix not in (".jsonl", ".txt"):
    raise PromptFileError(f"{p}: unknown prompt file type {p.suffix!r}; "
                          "use .txt (marked spans) or .jsonl")
  name = name or p.stem
  out = []
  for lineno, line in enumerate(_read_text(p).splitlines(), 1):
    if not line.strip() or line.lstrip().startswith("#"):
      continue
    where = f"{p}:{lineno}"
    if p.suffix == ".jsonl":
      demos, query, obj = _parse_jsonl_line(line, where)
      spec = build_prompt(demos, query, fmt)
      out.append(FilePrompt(
          spec, _as_tuple(obj.get("answer"), where, "answer"),
          _as_tuple(obj.get("source_answer"), where, "source_answer"),
          name, lineno))
    else:
      try:
        spec, ans, src = parse_marked(line, lineno)
      except PromptFileError as e:
        raise PromptFileError(f"{p}: {e}") from None
      out.append(FilePrompt(spec, ans, src, name, lineno))
  if not out:
    raise PromptFileError(f"{p}: no prompts")
  return out


def looks_like_file(arg: str) -> bool:
  return arg.endswith((".txt", ".jsonl")) or "/" in arg


def resolve_side(arg: str, n: int, fmt: PromptFormat = STUDY_FORMAT):
  """A sweep side given as a task name or a prompt file.

  Returns (name, is_task, prompts): (task, True, None) for a registered
  task; (file stem, False, its first n prompts) for a prompt file. A name
  that is neither raises the task registry's UnknownTaskError.
  """
  from icl_jax.tasks import UnknownTaskError, get_task

  try:
    get_task(arg)
    return arg, True, None
  except UnknownTaskError:
    if not looks_like_file(arg) and not Path(arg).exists():
      raise
  prompts = load_prompt_file(arg, fmt)
  return Path(arg).stem, False, prompts[:n]


def reformat_setup(setup, fmt: PromptFormat):
  """A pair setup whose task episodes are rendered in another prompt format
  (as `FilePrompt`s answering with the task's expected answer); file prompts
  are kept as they are."""

  def conv(eps):
    """Task episodes -> FilePrompts in `fmt` (file prompts kept)."""
    if eps is None:
      return None
    out = []
    for e in eps:
      if isinstance(e, FilePrompt):
        out.append(e)
        continue
      out.append(FilePrompt(build_prompt(e.demos, e.query, fmt),
                            (e.expected,) if e.expected else (), (), e.task))
    return out

  return dataclasses.replace(setup, source_episodes=conv(
      setup.source_episodes), target_episodes=conv(setup.target_episodes))


def file_digest(path) -> str:
  """Content hash of a prompt file (a changed file = another config)."""
  import hashlib

  return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]
