"""Dynamic prompts and prompts files.

A prompt may be a template in the syntax of the `dynamicprompts` library: `{red|green|blue}` picks one
variant, `__colors__` one line of colors.txt in the wildcards folder. In random mode each output's own seed
picks, so a seed makes the same prompt again; in combinatorial mode a job makes every combination. A
prompts file (text: one prompt per line; CSV: a header row of parameter names) becomes one job per line.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubin.errors import InvalidParams
from kubin.params import PROMPT_MODES, TASK_LABELS, params_class

__all__ = ["PROMPT_MODES", "PromptLine", "PromptPlan", "Wildcards", "is_template", "plan_prompts"]

# The parameters that hold prompts (Mix's `prompts` is a list of them).
PROMPT_FIELDS = ("prompt", "negative_prompt", "negative_prior_prompt", "prompts")
DEFAULT_MAX_COMBINATIONS = 100  # config wildcards.max_combinations
# What makes a prompt a template: a variant or variable ("{", "${") or a wildcard ("__name__"). Other
# prompts are used as they are, so "$5" or a lone "__" never meets the template parser.
_TEMPLATE_RE = re.compile(r"\{|__\S+?__")


def is_template(text: Any) -> bool:
    """Whether a prompt (or one of a list of prompts) has variants or wildcards to expand."""
    if isinstance(text, list):
        return any(is_template(t) for t in text)
    return isinstance(text, str) and bool(_TEMPLATE_RE.search(text))


@dataclass(frozen=True)
class Wildcards:
    """Expands prompt templates with the wildcard files of one folder (`__name__` is name.txt there, or an
    entry of a .json or .yaml file; `__sub/name__` looks in a subfolder)."""

    folder: Path
    max_combinations: int = DEFAULT_MAX_COMBINATIONS

    def random(self, template: str, seed: int | str) -> str:
        """The prompt `seed` picks from the template: the same seed always picks the same one."""
        from dynamicprompts.generators import RandomPromptGenerator

        generator = RandomPromptGenerator(self._manager(), seed=seed)
        return self._run(template, lambda: generator.generate(template, 1))[0]

    def combinations(self, template: str) -> tuple[list[str], bool]:
        """Every prompt the template makes, in order, at most max_combinations of them; and whether there
        were more."""
        from dynamicprompts.generators import CombinatorialPromptGenerator

        generator = CombinatorialPromptGenerator(self._manager())
        prompts = self._run(template, lambda: generator.generate(template, self.max_combinations + 1))
        return prompts[: self.max_combinations], len(prompts) > self.max_combinations

    def _manager(self):
        return _strict_manager(Path(self.folder))

    def _run(self, template: str, expand: Callable[[], list[str]]) -> list[str]:
        from pyparsing import ParseBaseException

        try:
            return expand()
        except ParseBaseException as exc:
            raise InvalidParams(
                f"The prompt template {_short(template)} could not be read: {exc.msg} at character "
                f"{exc.loc + 1}. Variants look like {{red|green}}, wildcards like __colors__."
            ) from None


def _strict_manager(folder: Path):
    """A dynamicprompts WildcardManager that raises a clear error for a wildcard without values: the
    library would leave `__name__` in the prompt as it is and only log a warning."""
    from dynamicprompts.wildcards import WildcardManager

    class StrictWildcardManager(WildcardManager):
        def get_values(self, wildcard: str):
            values = super().get_values(wildcard)
            if not len(values):
                raise InvalidParams(_missing_wildcard(wildcard, folder))
            return values

    return StrictWildcardManager(folder if folder.is_dir() else None)


def _missing_wildcard(name: str, folder: Path) -> str:
    where = f"the wildcards folder {folder}"
    if not folder.is_dir():
        return (
            f"Wildcard __{name}__ has no file: {where} does not exist. Create it and put {name}.txt in it "
            "(one value per line), or set wildcards.path in the config."
        )
    return (
        f"Wildcard __{name}__ has no file: put {name}.txt (one value per line) in {where} "
        "(wildcards.path in the config)."
    )


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


# --- one job's prompts -----------------------------------------------------------------------------
@dataclass
class PromptPlan:
    """The prompts of each output of one job: `expanded[i]` holds output i's value of every templated
    prompt field ({} for all when no prompt is a template); `templates` those fields' templates."""

    expanded: list[dict[str, Any]]
    templates: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.expanded)

    def calls(self, batch_size: int) -> list[list[int]]:
        """The outputs each pipeline call makes: batches of batch_size, split where the prompts differ
        (a pipeline call takes one prompt for all its images)."""
        calls: list[list[int]] = []
        for start in range(0, self.count, batch_size):
            for index in range(start, min(start + batch_size, self.count)):
                if index > start and self.expanded[index] == self.expanded[calls[-1][0]]:
                    calls[-1].append(index)
                else:
                    calls.append([index])
        return calls


def plan_prompts(params: Any, seed_of: Callable[[int], int], wildcards: Wildcards) -> PromptPlan:
    """Expand the params' prompt templates for every output of the job; `seed_of(i)` is output i's seed.

    Random mode: each output's prompt is the one its seed picks (other seeds of a batch pick others).
    Combinatorial mode: every combination of the prompt's variants, each made batch_count x batch_size
    times; the other prompt fields (negative, Mix's prompts) still pick at random by seed.
    """
    per_prompt = params.image_count
    fields = params.field_specs()  # Mix's `prompt` is a property that joins its prompts: not a field
    templates = {
        name: getattr(params, name)
        for name in PROMPT_FIELDS
        if name in fields and is_template(getattr(params, name))
    }
    if not templates:
        return PromptPlan([{} for _ in range(per_prompt)])
    notices: list[str] = []
    combos: list[str | None] = [None]
    if getattr(params, "prompt_mode", "random") == "combinatorial" and "prompt" in templates:
        combos, more = wildcards.combinations(templates["prompt"])
        if more:
            notices.append(
                f"The prompt template makes more than {wildcards.max_combinations} combinations; the first "
                f"{wildcards.max_combinations} are made (wildcards.max_combinations in the config)."
            )
    expanded = []
    for c, combo in enumerate(combos):
        for j in range(per_prompt):
            seed = seed_of(c * per_prompt + j)
            values: dict[str, Any] = {}
            for name, template in templates.items():
                if name == "prompt" and combo is not None:
                    values[name] = combo
                elif isinstance(template, list):
                    values[name] = [
                        wildcards.random(t, f"{seed}:{name}:{k}") if is_template(t) else t
                        for k, t in enumerate(template)
                    ]
                else:  # the prompt by the seed itself; the others by seeds of their own
                    values[name] = wildcards.random(template, seed if name == "prompt" else f"{seed}:{name}")
            expanded.append(values)
    return PromptPlan(expanded, templates, notices)


# --- prompts files ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptLine:
    """One job of a prompts file: the line it came from and the parameters it sets."""

    line: int
    params: dict[str, Any]


def read_prompts_file(path: str | Path, task: str, base: dict[str, Any] | None = None) -> list[PromptLine]:
    """The jobs of a prompts file: a .csv file is read as CSV, any other as text. See parse_prompts."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidParams(f"Prompts file {path} not found.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidParams(f"Could not read the prompts file {path}: {exc}.") from None
    return parse_prompts(text, task, as_csv=path.suffix.lower() == ".csv", name=path.name, base=base)


def parse_prompts(
    text: str,
    task: str,
    as_csv: bool = False,
    name: str = "the prompts file",
    base: dict[str, Any] | None = None,
) -> list[PromptLine]:
    """One PromptLine per prompt. Text: each line that is not blank or a `#` comment is a prompt. CSV: the
    first row names parameters of the task (prompt, negative_prompt, seed, steps, ...), each later row
    sets them for one job (an empty cell leaves that parameter to `base`). Every line is checked against
    the task's parameters over `base`, so a bad one is an InvalidParams naming it before any job is queued."""
    text = text.removeprefix("\ufeff")
    if as_csv:
        lines = _csv_lines(text, task, name)
    else:
        lines = [
            PromptLine(number, {"prompt": line.strip()})
            for number, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
    if not lines:
        raise InvalidParams(f"{name} has no prompts: write one prompt per line.")
    cls = params_class(task)
    for line in lines:
        try:
            cls.from_dict({**(base or {}), **line.params}).validate()
        except InvalidParams as exc:
            raise InvalidParams(f"{name}, line {line.line}: {exc}") from None
    return lines


def _csv_lines(text: str, task: str, name: str) -> list[PromptLine]:
    cls = params_class(task)
    specs = cls.field_specs()
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if not header:
        raise InvalidParams(f"{name} is empty: its first row names the parameters, e.g. prompt,seed,steps.")
    columns = [cell.strip() for cell in header]
    for number, column in enumerate(columns, start=1):
        if column not in specs:
            raise InvalidParams(
                f"{name}, column {number} ({column!r}) is not a parameter of {TASK_LABELS.get(task, task)}; "
                f"the first row names parameters: {', '.join(specs)}."
            )
    lines = []
    for row in rows:
        number = rows.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(columns):
            raise InvalidParams(
                f"{name}, line {number} has {len(row)} values but the first row names {len(columns)} "
                "parameters (quote values that hold a comma)."
            )
        values = {}
        for column, cell in zip(columns, row, strict=False):
            if not cell.strip():
                continue
            try:
                cls.from_dict({column: cell.strip()})
            except InvalidParams as exc:
                raise InvalidParams(f"{name}, line {number}, column {column!r}: {exc}") from None
            values[column] = cell.strip()
        lines.append(PromptLine(number, values))
    return lines
