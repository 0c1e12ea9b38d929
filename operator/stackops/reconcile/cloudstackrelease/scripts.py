"""The shell the CloudStackRelease reconciler runs on the build host: scripts/*.sh (POSIX sh; values arrive as
positional parameters or in an inputs file of `key=value` lines whose values the API's patterns keep free of shell
metacharacters and newlines; the work directory's layout, SOURCE_DIR and BUILDS_DIR, in a preamble from inputs.py).

Layout under `builder.workDir`:
- `src/`: the Git work tree (one per work dir; builds take `.lock` with flock, so two never run in parallel);
- `builds/<inputs hash>/`: one directory per set of inputs: `inputs`, `pipeline.sh`, `pid`, `phase`, `log`,
  `progress`, `failure` (`<reason> <message>`), `result` (tab-separated records: `commit <sha>`,
  `pr <n> <commits, space-separated>`, `artifact <name> <sha256> <size> <path>`), `started`, `finished` (epoch
  seconds);
- `current`: the hash of the build started last.

OBSERVE resolves the inputs (base and upstream commits with `git ls-remote`, each patch's SHA-256), computes the
inputs hash exactly as `inputs.inputs_hash` does, and reports that build's state, in one round trip, as
tab-separated records that observed.py parses strictly (a build writes its own state files, so nothing read from
them is trusted to be well-formed). START writes the inputs and the pipeline and launches it detached (`setsid`),
so it outlives the SSH session and the operator: a restarted operator finds it running, or finished, under the
same hash. PIPELINE is the build itself.

Git and curl only speak http(s), ssh and git (`GIT_ALLOW_PROTOCOL`, `curl --proto`; redirects only to http(s)):
`file://` only when the spec sets `allowFileURLs`. Artifact names are plain file names or the build fails
(`ArtifactNameInvalid`); REMOVE refuses any other name.
"""
from __future__ import annotations

from ..shell import fill, load, with_values
from .inputs import BUILDS_DIR, SOURCE_DIR


def _script(name: str) -> str:
    return with_values(load(__package__, name), "reconcile/cloudstackrelease/inputs.py",
                       {"BUILDS_DIR": BUILDS_DIR, "SOURCE_DIR": SOURCE_DIR})


OBSERVE = _script("observe.sh")
PIPELINE = _script("pipeline.sh")
# START WORK HASH SETTINGS KEY=VALUE… : supersede a build of other inputs that still runs, then launch the pipeline.
START = fill(_script("start.sh"), "@PIPELINE@", PIPELINE)
# REMOVE WORK PUBLISH NAME…: deletionPolicy Delete — the published packages, the repository metadata, the tree.
REMOVE = _script("remove.sh")


def start_script() -> str:
    return START
