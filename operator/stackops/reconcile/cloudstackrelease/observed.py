"""What the observe script reported: the resolved inputs, their hash, and the state of that build on the host."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Artifact:
    name: str
    sha256: str
    size: int
    path: str


@dataclass
class BuildFacts:
    """Lines `key value…` of the observe script, parsed. `problem` is set when the inputs could not be resolved."""

    missing_tools: list[str] = field(default_factory=list)
    problem: tuple[str, str] | None = None  # (reason, message)
    base: str = ""
    upstream: str = ""
    patches: dict[int, str] = field(default_factory=dict)  # pull request → SHA-256 of its patch
    inputs_hash: str = ""
    current: str = ""  # hash of the build started last in this work dir
    current_running: bool = False  # that build (of other inputs) still runs
    exists: bool = False  # builds/<hash>/ exists
    running_pid: int = 0
    phase: str = ""
    started: int = 0
    finished: int = 0
    progress: str = ""
    base_version: str = ""
    failure: tuple[str, str] | None = None  # (reason, message)
    commit: str = ""
    applied: dict[int, list[str]] = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.running_pid > 0


def parse(output: str) -> BuildFacts:
    facts = BuildFacts()
    for line in output.splitlines():
        key, _, rest = line.partition(" ")
        if key == "missing":
            facts.missing_tools.append(rest)
        elif key == "fetch-failed":
            what, _, why = rest.partition(" ")
            facts.problem = ("SourceUnreachable", f"cannot resolve the {what} ref: {why or 'git ls-remote failed'}")
        elif key == "ref-missing":
            what, _, ref = rest.partition(" ")
            facts.problem = ("RefNotFound", f"the {what} repository has no branch, tag or commit {ref!r}")
        elif key == "patch-failed":
            number, _, url = rest.partition(" ")
            facts.problem = ("PatchDownloadFailed", f"pull request #{number}: cannot download {url}")
        elif key == "base":
            facts.base = rest
        elif key == "upstream":
            facts.upstream = rest
        elif key == "patch":
            number, _, digest = rest.partition(" ")
            facts.patches[int(number)] = digest
        elif key == "hash":
            facts.inputs_hash = rest
        elif key == "current":
            facts.current = "" if rest == "-" else rest
        elif key == "current-running":
            facts.current_running = True
        elif key == "state":
            facts.exists = rest != "none"
        elif key == "running":
            facts.running_pid = int(rest or 0)
        elif key == "phase":
            facts.exists, facts.phase = True, rest
        elif key in ("started", "finished"):
            setattr(facts, key, int(rest or 0) if rest.isdigit() else 0)
        elif key == "progress":
            facts.progress = rest
        elif key == "base_version":
            facts.base_version = rest
        elif key == "failure":
            reason, _, message = rest.partition(" ")
            facts.failure = (reason, message)
        elif key == "result":
            _parse_result(facts, rest)
        elif key == "log":
            facts.log_tail.append(rest)
    return facts


def _parse_result(facts: BuildFacts, line: str) -> None:
    key, _, rest = line.partition(" ")
    words = rest.split()
    if key == "commit" and words:
        facts.commit = words[0]
    elif key == "pr" and words:
        facts.applied[int(words[0])] = words[1:]
    elif key == "artifact" and len(words) >= 4 and words[2].isdigit():
        facts.artifacts.append(Artifact(words[0], words[1], int(words[2]), " ".join(words[3:])))
