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

Relative links of the same documents must point at existing files (and headings, for `#anchor` links).
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

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "docs").glob("*/README.md")])

#: Programs whose documented commands cannot run in a test, and why. Their flags are not checked.
NOT_RUNNABLE = {
    "grpcurl": "needs the running stack (`make run`) and a grpcurl binary",
    "kubectl": "needs a Kubernetes cluster",
    "gcloud": "needs a Google Cloud project",
    "eksctl": "needs an AWS account",
    "docker": "builds and pushes images to a registry",
    "openssl": "only generates secrets inside other commands",
    "bash": "`bash .ci/run` is the whole CI build (about 15 minutes)",
    "feast": "the Feast CLI against the built feature store; `make features` runs it and tests/features tests it",
}
#: `python -m` modules without a command line of their own (they start a server), and what they need.
SERVERS = {
    "services.gateway": "starts the gateway; `make run` starts it",
    "services.candidate": "starts the candidate stage; `make run` starts it",
    "services.ranking": "starts the ranking stage; `make run` starts it",
    "services.rerank": "starts the rerank stage; `make run` starts it",
}
#: Shell words that change no program: skipped before the program name.
WRAPPERS = {"nice": 2, "time": 0, "env": 0, "exec": 0}  # word -> how many arguments it takes (nice -n 19)
SHELL_BUILTINS = {"cd", "export", ".", "source", "echo", "for", "do", "done", "wait", "sleep", "set"}
PROGRAMS = {"python", "recsys", "make", "pytest", "ray", "helm", *NOT_RUNNABLE}
FENCED = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.S | re.M)
INLINE = re.compile(r"(?<!`)`([^`]+?)`(?!`)")
HELP_TIMEOUT_S = 120


@dataclass(frozen=True)
class Command:
    doc: Path
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def _logical_lines(body: str, first_line: int) -> Iterator[tuple[int, str]]:
    """The block's lines with `\\` continuations joined, and their line numbers."""
    pending, start = "", first_line
    for offset, raw in enumerate(body.splitlines()):
        if not pending:
            start = first_line + offset
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def _program(words: list[str]) -> str:
    """The program a command runs: `.venv/bin/python` -> python, after env assignments and wrappers."""
    words = _strip_prefix(words)
    if not words:
        return ""
    name = Path(words[0]).name
    return "python" if re.fullmatch(r"python(3(\.\d+)?)?", name) else name


def _strip_prefix(words: list[str]) -> list[str]:
    i = 0
    while i < len(words):
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[i]):
            i += 1
        elif words[i] in WRAPPERS:
            i += 1 + WRAPPERS[words[i]]
        elif words[i] == "timeout":
            i += 2
        else:
            break
    return words[i:]


def _split(text: str) -> list[list[str]]:
    """Simple commands of a shell line (split at && ; | & and comments dropped)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands: list[list[str]] = [[]]
    try:
        for token in lexer:
            if token and set(token) <= set(";&|"):
                commands.append([])
            else:
                commands[-1].append(token)
    except ValueError:  # unbalanced quotes: not a shell line
        return []
    return [c for c in commands if c]


def documented_commands() -> list[Command]:
    found: list[Command] = []
    for doc in DOCS:
        text = doc.read_text()
        prose = text
        for block in FENCED.finditer(text):
            info = block["info"].strip().split()
            lang = info[0] if info else ""
            first = text.count("\n", 0, block.start("body")) + 1
            for line_no, line in _logical_lines(block["body"], first):
                stripped = line.strip()
                if lang in {"bash", "sh", "shell", "console"}:
                    command = stripped.removeprefix("$ ")
                elif lang in {"text", ""} and stripped.startswith("$ "):
                    command = stripped[2:]
                else:
                    continue
                if command and not command.startswith("#"):
                    found.append(Command(doc, line_no, command))
            # Blank the block out of the prose (keeping line numbers) before the inline spans are read.
            prose = prose[: block.start()] + re.sub(r"[^\n]", " ", block.group()) + prose[block.end() :]
        for span in INLINE.finditer(prose):
            if "\n\n" in span[1]:
                continue  # a code span ends with its paragraph: these backticks do not pair up
            words = _split(span[1].replace("\n", " "))
            if words and _program(words[0]) in PROGRAMS and len(_strip_prefix(words[0])) > 1:
                found.append(Command(doc, prose.count("\n", 0, span.start()) + 1, " ".join(span[1].split())))
    return found


# --- running --help once per program and command ------------------------------------------------------------


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
    words = _clean(_strip_prefix(words))
    program = _program(words)
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
            for words in _split(command.text):
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
    for words in _split(command.text):
        try:
            problems += check(words, helps)
        except Unclassified as exc:
            problems.append(str(exc))
    assert not problems, f"{command.where}: `{command.text}`\n" + "\n".join(f"- {p}" for p in problems)


# --- links --------------------------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*?|_(?=\w)|(?<=\w)_", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    text = FENCED.sub("", doc.read_text())
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        slug = _slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_relative_links_resolve(doc: Path) -> None:
    text = FENCED.sub("", doc.read_text())
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(f"{target}: no file {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{target}: no heading with anchor #{anchor} in {path.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}:\n" + "\n".join(f"- {b}" for b in broken)
