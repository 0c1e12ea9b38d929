"""A Maven stand-in for the lab's CloudStack-like source tree (`tools/lab/mvn_standin.py` in that tree).

The fixture repository (fixture.py) ships this file next to `tools/lab/mvn-standin.sh`, which runs it with the
machine's python3: a lab build host has no Maven, no JDK and no network. It reads the reactor from the POMs
(root `pom.xml` and its `<modules>`, recursively), checks each module's `<parent>` version against the reactor
(a POM left at the old version fails like Maven's "Non-resolvable parent POM"), and runs the lifecycle phases
asked for: `clean` removes `target/`; `compile` fails with a compilation error when the module holds a file
`BROKEN`; `package` writes `<module>/target/<artifactId>-<version>.jar`, a real jar (zip with a manifest and
`META-INF/maven/…/pom.properties`, the module's sources as its "classes", fixed timestamps); `install` copies it
to `~/.m2/repository`. Profile `systemvm` also writes `systemvm/dist/systemvm.iso`. Output follows Maven's
(`[INFO] Building …`, a reactor summary, `BUILD SUCCESS` / `BUILD FAILURE`); exit status 1 on failure.
Standard library only: it runs as a script inside the tree, not as part of stackops.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import xml.etree.ElementTree as ElementTree
import zipfile
from dataclasses import dataclass
from pathlib import Path

NS = {"m": "http://maven.apache.org/POM/4.0.0"}
PHASES = ("clean", "validate", "compile", "test", "package", "verify", "install", "deploy")
FLAGS = {"-q", "--quiet", "-B", "--batch-mode", "-e", "--errors", "-X", "--debug", "-o", "--offline", "-U",
         "--update-snapshots", "-V", "--show-version", "-nsu", "--no-snapshot-updates", "-ntp",
         "--no-transfer-progress", "-fae", "--fail-at-end", "-ff", "--fail-fast"}
WITH_VALUE = {"-T", "--threads", "-s", "--settings", "-gs", "--global-settings", "-t", "--toolchains"}
LINE = "[INFO] " + "-" * 72
ZIP_DATE = (2016, 3, 14, 12, 0, 0)


class BuildFailure(Exception):
    """The build failed: the message is Maven's `[ERROR] Failed to execute goal …` line."""


@dataclass
class Module:
    directory: Path
    group_id: str
    artifact_id: str
    version: str
    name: str
    packaging: str
    parent: tuple[str, str, str] | None  # groupId, artifactId, version


def text(element: ElementTree.Element, path: str) -> str:
    found = element.find(path, NS)
    return (found.text or "").strip() if found is not None else ""


def load(pom: Path, parent: Module | None = None) -> list[Module]:
    """The module of `pom` and, after it, those of its `<modules>` (Maven's declaration order)."""
    try:
        root = ElementTree.parse(pom).getroot()
    except (OSError, ElementTree.ParseError) as error:
        raise BuildFailure(f"Non-parseable POM {pom}: {error}") from error
    declared = root.find("m:parent", NS)
    parent_ref = None if declared is None else (
        text(declared, "m:groupId"), text(declared, "m:artifactId"), text(declared, "m:version"))
    module = Module(
        directory=pom.parent, artifact_id=text(root, "m:artifactId"),
        group_id=text(root, "m:groupId") or (parent_ref[0] if parent_ref else ""),
        version=text(root, "m:version") or (parent_ref[2] if parent_ref else ""),
        name=text(root, "m:name") or text(root, "m:artifactId"), packaging=text(root, "m:packaging") or "jar",
        parent=parent_ref)
    if parent is not None and parent_ref is not None and parent_ref[:2] == (parent.group_id, parent.artifact_id) \
            and parent_ref[2] != parent.version:
        raise BuildFailure(
            f"Non-resolvable parent POM for {module.group_id}:{module.artifact_id}:{module.version}: Could not "
            f"find artifact {parent_ref[0]}:{parent_ref[1]}:pom:{parent_ref[2]} (the reactor has "
            f"{parent.artifact_id} {parent.version}) @ line 1, column 1 -> [Help 2]")
    modules = [module]
    for child in root.findall("m:modules/m:module", NS):
        modules += load(pom.parent / (child.text or "").strip() / "pom.xml", module)
    return modules


def sources(module: Module) -> list[Path]:
    source = module.directory / "src"
    return sorted(path for path in source.rglob("*") if path.is_file()) if source.is_dir() else []


def write_jar(module: Module, jar: Path) -> None:
    jar.parent.mkdir(parents=True, exist_ok=True)
    manifest = (f"Manifest-Version: 1.0\r\nCreated-By: stackops lab mvn-standin\r\nImplementation-Title: "
                f"{module.artifact_id}\r\nImplementation-Version: {module.version}\r\n\r\n")
    properties = f"groupId={module.group_id}\nartifactId={module.artifact_id}\nversion={module.version}\n"
    entries = [("META-INF/MANIFEST.MF", manifest.encode()),
               (f"META-INF/maven/{module.group_id}/{module.artifact_id}/pom.properties", properties.encode())]
    for path in sources(module):
        name = path.relative_to(module.directory / "src").as_posix()
        entries.append((name[:-len(".java")] + ".class" if name.endswith(".java") else name, path.read_bytes()))
    with zipfile.ZipFile(jar, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(zipfile.ZipInfo(name, ZIP_DATE), data)


def build(module: Module, phases: list[str], profiles: set[str], skip_tests: bool, repository: Path) -> None:
    """One module through the phases asked for (each implies those before it, `clean` apart)."""
    target = module.directory / "target"
    last = max((PHASES.index(phase) for phase in phases if phase != "clean"), default=-1)
    if "clean" in phases:
        print(f"[INFO] --- maven-clean-plugin:2.5:clean (default-clean) @ {module.artifact_id} ---")
        shutil.rmtree(target, ignore_errors=True)
    if module.packaging == "pom" or last < PHASES.index("compile"):
        if module.packaging == "pom" and last >= PHASES.index("package") and module.artifact_id == "cloud-systemvm" \
                and "systemvm" in profiles:
            iso = module.directory / "dist" / "systemvm.iso"
            iso.parent.mkdir(parents=True, exist_ok=True)
            iso.write_bytes(f"CD001 stackops lab systemvm.iso {module.version}\n".encode())
            print(f"[INFO] --- exec-maven-plugin:1.2.1:exec (package) @ {module.artifact_id} ---")
            print(f"[INFO] Building ISO {iso}")
        return
    print(f"[INFO] --- maven-compiler-plugin:3.2:compile (default-compile) @ {module.artifact_id} ---")
    broken = module.directory / "BROKEN"
    if broken.exists():
        reason = broken.read_text(errors="replace").strip() or "cannot find symbol"
        print("[ERROR] COMPILATION ERROR : ")
        print(f"[ERROR] {broken}:[1,1] {reason}")
        raise BuildFailure(
            "Failed to execute goal org.apache.maven.plugins:maven-compiler-plugin:3.2:compile (default-compile) "
            f"on project {module.artifact_id}: Compilation failure")
    print(f"[INFO] Compiling {len(sources(module))} source files to {target / 'classes'}")
    (target / "classes").mkdir(parents=True, exist_ok=True)
    if last >= PHASES.index("test"):
        print(f"[INFO] --- maven-surefire-plugin:2.18.1:test (default-test) @ {module.artifact_id} ---")
        print("[INFO] Tests are skipped." if skip_tests else "Tests run: 1, Failures: 0, Errors: 0, Skipped: 0")
    if last < PHASES.index("package"):
        return
    jar = target / f"{module.artifact_id}-{module.version}.jar"
    print(f"[INFO] --- maven-jar-plugin:2.5:jar (default-jar) @ {module.artifact_id} ---")
    print(f"[INFO] Building jar: {jar}")
    write_jar(module, jar)
    if last >= PHASES.index("install"):
        installed = repository / module.group_id.replace(".", "/") / module.artifact_id / module.version
        installed.mkdir(parents=True, exist_ok=True)
        print(f"[INFO] --- maven-install-plugin:2.5.2:install (default-install) @ {module.artifact_id} ---")
        print(f"[INFO] Installing {jar} to {installed / jar.name}")
        shutil.copyfile(jar, installed / jar.name)


def parse(arguments: list[str]) -> tuple[list[str], set[str], dict[str, str], Path]:
    """Goals, active profiles, -D properties and the POM of a Maven command line."""
    goals: list[str] = []
    profiles: set[str] = set()
    properties: dict[str, str] = {}
    pom = Path("pom.xml")
    words = iter(arguments)
    for word in words:
        if word in ("-P", "--activate-profiles") or (word.startswith("-P") and len(word) > 2):
            value = word[2:] if word.startswith("-P") and len(word) > 2 else next(words, "")
            for profile in filter(None, value.split(",")):
                if profile.startswith(("!", "-")):
                    profiles.discard(profile[1:])
                else:
                    profiles.add(profile)
        elif word == "-D" or word.startswith("-D"):
            key, _, value = (word[2:] or next(words, "")).partition("=")
            properties[key] = value or "true"
        elif word in ("-f", "--file"):
            given = Path(next(words, "pom.xml"))
            pom = given / "pom.xml" if given.is_dir() else given
        elif word in FLAGS:
            continue
        elif word in WITH_VALUE:
            next(words, "")
        elif word.startswith("-"):
            raise SystemExit(f"Unable to parse command line options: Unrecognized option: {word}")
        else:
            goals.append(word)
    return goals, profiles, properties, pom


def main(arguments: list[str]) -> int:
    started = time.monotonic()
    try:
        goals, profiles, properties, pom = parse(arguments)
    except SystemExit as error:
        print(str(error), file=sys.stderr)
        return 1
    print("[INFO] Scanning for projects...")
    try:
        if not goals:
            raise BuildFailure("No goals have been specified for this build. Available lifecycle phases are: "
                               + ", ".join(PHASES) + ". -> [Help 1]")
        unknown = [goal for goal in goals if goal not in PHASES]
        if unknown:
            raise BuildFailure(f'Unknown lifecycle phase "{unknown[0]}" (the lab stand-in runs lifecycle phases '
                               "only: " + ", ".join(PHASES) + ") -> [Help 1]")
        modules = load(pom.absolute())
    except BuildFailure as failure:
        print(f"[ERROR] {failure}")
        return 1
    skip_tests = properties.get("skipTests", "false") != "false" or "maven.test.skip" in properties
    repository = Path(os.environ.get("HOME", "/root")) / ".m2" / "repository"
    print(LINE + "\n[INFO] Reactor Build Order:\n[INFO] ")
    for module in modules:
        print(f"[INFO] {module.name}")
    results: list[tuple[Module, str]] = []
    failure: BuildFailure | None = None
    for module in modules:
        if failure is not None:
            results.append((module, "SKIPPED"))
            continue
        print(f"[INFO]                                                                         \n{LINE}")
        print(f"[INFO] Building {module.name} {module.version}\n{LINE}")
        try:
            build(module, goals, profiles, skip_tests, repository)
            results.append((module, "SUCCESS"))
        except BuildFailure as error:
            failure = error
            results.append((module, "FAILURE"))
    print(LINE + "\n[INFO] Reactor Summary:\n[INFO] ")
    for module, status in results:
        print(f"[INFO] {(module.name + ' ').ljust(52, '.')} {status}")
    print(LINE)
    print("[INFO] BUILD FAILURE" if failure else "[INFO] BUILD SUCCESS")
    print(f"{LINE}\n[INFO] Total time: {time.monotonic() - started:.3f} s\n{LINE}")
    if failure is not None:
        print(f"[ERROR] {failure}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
