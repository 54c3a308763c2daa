"""The commands README.md and docs/ show, read from the documents themselves (see test_documented_commands)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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


def program_of(words: list[str]) -> str:
    """The program a command runs: `.venv/bin/python` -> python, after env assignments and wrappers."""
    words = strip_prefix(words)
    if not words:
        return ""
    name = Path(words[0]).name
    return "python" if re.fullmatch(r"python(3(\.\d+)?)?", name) else name


def strip_prefix(words: list[str]) -> list[str]:
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


def split_commands(text: str) -> list[list[str]]:
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
            words = split_commands(span[1].replace("\n", " "))
            if words and program_of(words[0]) in PROGRAMS and len(strip_prefix(words[0])) > 1:
                found.append(Command(doc, prose.count("\n", 0, span.start()) + 1, " ".join(span[1].split())))
    return found


# --- running --help once per program and command ------------------------------------------------------------
