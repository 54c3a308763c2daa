"""Documentation examples are tests: the commands README.md and docs/ show must run as written.

Commands are read from the documents themselves: every line of a ```bash / ```sh / ```shell / ```console block,
every `$ ` line of a ```text block, and every inline code span in the prose that starts with a program below
(`python -m ...`, `recsys ...`, `make ...`, ...). Each simple command (split at `&&`, `;`, `|`) is classified:

- checked by running it cheaply here: `python -m <module>` and `recsys <command>` must exist, answer `--help`
  (run once per module and command, as subprocesses) and list every `--flag` the document passes; `make help`
  runs; `make -n <target>` succeeds for every target named; `pytest <path>::<test>` names an existing file and
  test; `ray <command>` and `helm <command>` list the flags used; a chart that `helm` installs renders with
  `helm template` (when helm is in var/tools/ or on PATH);
- not runnable here (needs a running stack, a cluster, a cloud account or a long build): `NOT_RUNNABLE` names
  each such program with the reason. A program in neither list fails the test, so a new kind of command is
  classified when it is documented.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.docs.documents import (
    HELP_TIMEOUT_S,
    NOT_RUNNABLE,
    ROOT,
    SERVERS,
    SHELL_BUILTINS,
    Command,
    documented_commands,
    program_of,
    split_commands,
    strip_prefix,
)


@dataclass
class Helps:
    """`<program> <path...> --help`, each run once, as subprocesses, a few at a time."""

    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=3))
    results: dict[tuple[str, ...], Future[subprocess.CompletedProcess[str]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, argv: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        with self.lock:
            if argv not in self.results:
                self.results[argv] = self.pool.submit(_run, argv)
        return self.results[argv].result()


def _env() -> dict[str, str]:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", TERM="dumb", PYTHONPATH=str(ROOT))
    env.pop("FORCE_COLOR", None)
    return env


def _run(argv: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(argv), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=HELP_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(list(argv), 124, "", f"timed out after {exc.timeout} s")


def _recsys_argv() -> tuple[str, ...]:
    """The `recsys` entry point of pyproject.toml, run with this interpreter (installed or not)."""
    target = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["recsys"]
    module, _, attr = target.partition(":")
    code = f"import sys; sys.argv[0] = 'recsys'; from {module} import {attr} as entry; sys.exit(entry())"
    return (sys.executable, "-c", code)


def _tool(name: str) -> str | None:
    local = ROOT / "var" / "tools" / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    return shutil.which(name)


def _has_flag(text: str, flag: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) is not None


def _flags(words: list[str]) -> list[str]:
    return [w.split("=", 1)[0] for w in words if re.fullmatch(r"--[a-z][a-z0-9.-]*(=.*)?", w)]


def _clean(words: list[str]) -> list[str]:
    """Drops the optional brackets and the `...` of prose ("recsys bench rerank [--count 20 ...]")."""
    out = [w.strip("[]") for w in words]
    return [w for w in out if w and w != "..." and not w.endswith("...")]


def _check_cli(helps: Helps, base: tuple[str, ...], args: list[str], what: str) -> list[str]:
    """Problems of `<base> <args>` against its --help: the command path must answer --help and list each flag.

    The words before the first flag are the command path (`recsys bench retrieval`, `ray job submit`): each
    must answer `--help` with a text of its own. Options before the command (`recsys --json recommend`) are
    passed over: while no command is found, a later word is tried when the help names it on no line of the
    flag before it (which would make it that flag's value).
    """
    top = helps.run((*base, "--help"))
    if top.returncode != 0:
        return [f"`{what} --help` exits {top.returncode}: {(top.stderr or top.stdout).strip()[-600:]}"]
    path: list[str] = []
    texts = [top.stdout + top.stderr]
    leading = True
    for i, word in enumerate(args):
        if word.startswith("-"):
            leading = False
            continue
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", word):
            continue
        if not leading:
            flag = args[i - 1] if i and args[i - 1].startswith("--") else None
            if path or not _has_word(texts[-1], word) or (flag and _on_one_line(texts[-1], flag, word)):
                continue
        candidate = helps.run((*base, *path, word, "--help"))
        text = candidate.stdout + candidate.stderr
        if candidate.returncode == 0 and text != texts[-1]:
            path.append(word)
            texts.append(text)
        elif leading and not path and candidate.returncode != 0:
            return [f"`{what} {word} --help` exits {candidate.returncode}: {text.strip()[-400:]}"]
    name = " ".join([what, *path])
    missing = [f for f in dict.fromkeys(_flags(args)) if not any(_has_flag(t, f) for t in texts)]
    return [f"`{name} --help` does not list {f}" for f in missing]


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def _on_one_line(text: str, flag: str, word: str) -> bool:
    """Whether the help describes `word` with `flag`: on its line or the two after it (wrapped help)."""
    lines = text.splitlines()
    return any(
        _has_flag(line, flag) and any(_has_word(near, word) for near in lines[i : i + 3])
        for i, line in enumerate(lines)
    )


def _check_python(helps: Helps, words: list[str]) -> list[str]:
    if len(words) < 2:
        return []
    if words[1] != "-m":
        script = ROOT / words[1]
        return [] if script.is_file() else [f"no script {words[1]}"]
    module, args = words[2], words[3:]
    if "<" in module or "$" in module:
        return []  # a placeholder such as services.<name>
    missing = _missing_module(module)
    if missing:
        return [missing]
    if module in SERVERS:
        flags = _flags(args)
        return [f"{module} takes no flags ({SERVERS[module]}); the doc passes {flags}"] if flags else []
    return _check_cli(helps, (sys.executable, "-m", module), args, f"python -m {module}")


def _missing_module(module: str) -> str | None:
    """Why `python -m <module>` cannot run from this checkout, or None. A module found only outside it (an
    installed copy of another checkout) counts as missing."""
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        spec = None
    if spec is None:
        return f"no module {module}"
    top = ROOT / module.partition(".")[0]
    if spec.origin and top.is_dir() and not Path(spec.origin).resolve().is_relative_to(ROOT.resolve()):
        return f"no module {module} in this repository (only an installed copy elsewhere has it)"
    return None


def _make_variables() -> dict[str, str]:
    """Makefile variables that pass arguments to a `python -m` module: RUN_ARGS -> tools.stack, ..."""
    makefile = (ROOT / "Makefile").read_text()
    return {var: module for module, var in re.findall(r"-m ([\w.]+)\b[^\n]*?\$\((\w+_ARGS)\)", makefile)}


def _check_make(helps: Helps, words: list[str]) -> list[str]:
    targets = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    problems = []
    for target in targets or ["help"]:
        argv = ("make", "help") if target == "help" else ("make", "-n", target)
        result = helps.run(argv)
        if result.returncode != 0:
            problems.append(f"`{' '.join(argv)}` exits {result.returncode}: {result.stderr.strip()[-400:]}")
    # `make run RUN_ARGS=--exit-after-demo`: the arguments go to the module the recipe runs.
    for var, value in (w.split("=", 1) for w in words[1:] if re.fullmatch(r"\w+_ARGS=.*", w)):
        module = _make_variables().get(var)
        if module is None:
            problems.append(f"the Makefile passes {var} to no `python -m` module")
        else:
            problems += _check_python(helps, ["python", "-m", module, *shlex.split(value)])
    return problems


def _check_pytest(words: list[str]) -> list[str]:
    problems = []
    for word in words[1:]:
        if word.startswith("-"):
            continue
        file, _, rest = word.partition("::")
        path = ROOT / file
        if not path.exists():
            problems.append(f"no test path {file}")
            continue
        for name in filter(None, re.split(r"::|\[.*", rest)):
            if path.is_file() and not re.search(rf"\b(def|class) {re.escape(name)}\b", path.read_text()):
                problems.append(f"{file} has no test {name}")
    return problems


def _check_ray(helps: Helps, words: list[str]) -> list[str]:
    if "--" in words:  # ray job submit ... -- <entrypoint>: the entrypoint is a documented command too
        cut = words.index("--")
        return _check_ray(helps, words[:cut]) + check(words[cut + 1 :], helps)
    ray = _tool("ray")
    if ray is None:
        return []
    return _check_cli(helps, (ray,), words[1:], "ray")


def _check_helm(helps: Helps, words: list[str]) -> list[str]:
    helm = _tool("helm")
    if helm is None:
        return []
    problems = _check_cli(helps, (helm,), words[1:], "helm")
    if len(words) > 1 and words[1] in {"install", "upgrade", "template", "lint"}:
        positional = [
            w for i, w in enumerate(words) if i > 1 and not w.startswith("-") and not words[i - 1].startswith("-")
        ]
        for path in [w for w in positional if "/" in w]:
            if not (ROOT / path).exists():
                problems.append(f"no chart {path}")
            elif (ROOT / path / "Chart.yaml").is_file():
                result = helps.run((helm, "template", "rel", path, "--api-versions", "ray.io/v1"))
                if result.returncode != 0:
                    problems.append(f"`helm template rel {path}` exits {result.returncode}: {result.stderr[-400:]}")
    return problems


def check(words: list[str], helps: Helps) -> list[str]:
    """What is wrong with one simple command; raises Unclassified for a program this test does not know."""
    substitution = re.fullmatch(r"\w+=\$\((.+)", words[0]) if words else None
    if substitution:  # CLUSTER=$(kubectl ...): the command inside
        words = [substitution[1], *words[1:]]
        words[-1] = words[-1].removesuffix(")")
    words = _clean(strip_prefix(words))
    program = program_of(words)
    if not words or program in SHELL_BUILTINS:
        return []
    checker = CHECKERS.get(program)
    if checker is not None:
        return checker(helps, words)
    if program in NOT_RUNNABLE:
        return [f"no script {words[1]}"] if program == "bash" and not (ROOT / words[1]).is_file() else []
    raise Unclassified(f"`{program}` is neither checked nor listed in NOT_RUNNABLE with a reason")


CHECKERS: dict[str, Callable[[Helps, list[str]], list[str]]] = {
    "python": _check_python,
    "recsys": lambda helps, words: _check_cli(helps, _recsys_argv(), words[1:], "recsys"),
    "make": _check_make,
    "pytest": lambda helps, words: _check_pytest(words),
    "ray": _check_ray,
    "helm": _check_helm,
}


class Unclassified(Exception):
    pass


COMMANDS = documented_commands()


@pytest.fixture(scope="module")
def helps() -> Iterator[Helps]:
    runner = Helps()
    # Start every command's checks at once; the runner keeps three subprocesses going and runs each only once.
    with ThreadPoolExecutor(max_workers=16) as starters:
        for command in COMMANDS:
            for words in split_commands(command.text):
                starters.submit(_prefetch, words, runner)
    yield runner
    runner.pool.shutdown()


def _prefetch(words: list[str], runner: Helps) -> None:
    with contextlib.suppress(Unclassified):
        check(words, runner)


def test_commands_are_found() -> None:
    texts = " ".join(c.text for c in COMMANDS)
    for expected in ("make run", "python -m training.ray_jobs", "recsys eval", "ray job submit"):
        assert expected in texts, f"no documented command contains {expected!r}: is the extraction broken?"


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.where} {c.text[:60]}" for c in COMMANDS])
def test_documented_command(command: Command, helps: Helps) -> None:
    problems = []
    for words in split_commands(command.text):
        try:
            problems += check(words, helps)
        except Unclassified as exc:
            problems.append(str(exc))
    assert not problems, f"{command.where}: `{command.text}`\n" + "\n".join(f"- {p}" for p in problems)
