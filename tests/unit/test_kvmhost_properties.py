"""agent.properties edited as Java reads it (issue 12, item 5): the cloudstack-agent loads the file with
`java.util.Properties.load(InputStream)`, so a value is written escaped as `Properties.store` writes it, a key is
found where Java finds it (continuation lines, comments, \\r, not at U+2028), and a converged file plans nothing.

Where a JDK is on the machine (`java` with the jdk.compiler module, for a single-file source program), the files
are also loaded by the real `Properties.load` and compared with what stackops' port reads and what the spec asked.
"""
from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from stackops.reconcile.kvmhost import config

STYLE = "properties"

# --- what Java reads: the real thing, once per module --------------------------------------------------------------

JAVA_LOADER = r"""
import java.io.FileInputStream;
import java.io.InputStream;
import java.util.Properties;
import java.util.TreeSet;

/** Loads each file named on the command line with Properties.load(InputStream) (as the cloudstack-agent loads
 *  agent.properties) and prints a JSON list: per file an object of its keys and values, or null when load
 *  throws (a malformed \\uXXXX). Everything outside printable ASCII is printed as a JSON \\u escape. */
public class LoadProperties {
    public static void main(String[] args) throws Exception {
        StringBuilder out = new StringBuilder("[");
        for (int i = 0; i < args.length; i++) {
            out.append(i > 0 ? "," : "");
            Properties properties = new Properties();
            try (InputStream in = new FileInputStream(args[i])) {
                properties.load(in);
            } catch (IllegalArgumentException e) {
                out.append("null");
                continue;
            }
            out.append("{");
            String separator = "";
            for (String key : new TreeSet<>(properties.stringPropertyNames())) {
                out.append(separator).append(json(key)).append(":").append(json(properties.getProperty(key)));
                separator = ",";
            }
            out.append("}");
        }
        System.out.print(out.append("]"));
    }

    static String json(String text) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : text.toCharArray()) {
            if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
                out.append(String.format("\\u%04x", (int) c));
            } else {
                out.append(c);
            }
        }
        return out.append("\"").toString();
    }
}
"""


def java_problem() -> str | None:
    """Why the real Properties.load cannot be run here (None: it can)."""
    java = shutil.which("java")
    if java is None:
        return "no `java` on PATH (Debian: default-jdk-headless); compared with the port's rules only"
    modules = subprocess.run([java, "--list-modules"], capture_output=True, text=True, check=False)
    if "jdk.compiler@" not in modules.stdout:
        return (f"{java} has no jdk.compiler module (a JRE, not a JDK), so it cannot run a single-file source "
                "program; compared with the port's rules only")
    return None


def java_load(texts: list[str], directory: Path) -> list[dict[str, str] | None]:
    """What Properties.load(InputStream) makes of each text, written as the operator writes files (UTF-8)."""
    source = directory / "LoadProperties.java"
    source.write_text(JAVA_LOADER)
    paths = []
    for i, text in enumerate(texts):
        path = directory / f"{i}.properties"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        paths.append(str(path))
    result = subprocess.run(["java", "-Dfile.encoding=UTF-8", str(source), *paths], capture_output=True,
                            text=True, check=False, cwd=directory)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert len(loaded) == len(texts)
    return loaded


# --- cases ---------------------------------------------------------------------------------------------------------

# Files as admins, the agent (Properties.store) and the package leave them; what Java reads from each.
FILES: dict[str, tuple[str, dict[str, str] | None]] = {
    "plain": ("a=1\nb=2\n", {"a": "1", "b": "2"}),
    "separators": ("a:1\nb 2\nc\t=\t3\n  d\ne = :x\n", {"a": "1", "b": "2", "c": "3", "d": "", "e": ":x"}),
    "trailing-blank-kept": ("a = 1 \n", {"a": "1 "}),
    "continuation": ("a=first\\\n    second\nb=2\n", {"a": "firstsecond", "b": "2"}),
    "escaped-backslash-is-no-continuation": ("a=x\\\\\nb=2\n", {"a": "x\\", "b": "2"}),
    "crlf-continuation": ("a=1\\\r\n  2\r\nb=3\r\n", {"a": "12", "b": "3"}),
    "lone-cr-ends-lines": ("a=1\rb=2\r", {"a": "1", "b": "2"}),
    "comment-does-not-continue": ("# c\\\nb=2\n! d\\\nc=3\n", {"b": "2", "c": "3"}),
    "hash-in-continuation-is-data": ("a=b\\\n#c\n", {"a": "b#c"}),
    "blank-line-ends-continuation": ("a=b\\\n\nc=d\n", {"a": "b", "c": "d"}),
    "lone-backslash-then-comment": ("\\\n#x=y\nb=2\n", {"b": "2"}),
    "lone-backslash-then-blank": ("\\\n   \nb=2\n", {"b": "2"}),
    "lone-backslash-then-key": ("\\\nb=2\n", {"b": "2"}),
    "u2028-raw-in-file-is-no-line-end": ("a=v\u2028b=evil\n", {"a": "v\u00e2\u0080\u00a8b=evil"}),
    "nel-raw-in-file": ("a=v\u0085b=evil\nc=1\n", {"a": "v\u00c2\u0085b=evil", "c": "1"}),
    "vt-ff-fs-are-no-line-ends": ("a=v\x0bb=1\x0cc=2\x1cd=3\n", {"a": "v\x0bb=1\x0cc=2\x1cd=3"}),
    "utf8-bytes-read-as-latin1": ("a=caf\u00e9\n", {"a": "caf\u00c3\u00a9"}),
    "unicode-escapes": ("a=\\u00e9\\uD83D\\uDE00\\u2028\n", {"a": "\u00e9\U0001F600\u2028"}),
    "escapes": ("k\\=ey=v\\:al\nk\\ 2 v\\ \\t\\n\\r\\f\\q\\\\\n", {"k=ey": "v:al", "k 2": "v \t\n\r\fq\\"}),
    "last-wins": ("a=1\nb=2\na=3\n", {"a": "3", "b": "2"}),
    "blank-lines-no-final-newline": ("    \n\t\f\nx=y", {"x": "y"}),
    "continuation-at-eof": ("a=1\\", {"a": "1"}),
    "continuation-then-eof": ("a=1\\\n", {"a": "1"}),
    "lone-backslash-at-eof": ("a=1\n\\", {"a": "1", "": ""}),
    "blanks-after-separator-continue": ("a= \\\n  b\n", {"a": "b"}),
    "stored-by-the-agent": ("#Storage\n#Mon Jan 01 00:00:00 UTC 2024\nhost=10.0.0.1\\:8250\n"
                            "zone=z\\=1\nname=\\ lead\n", {"host": "10.0.0.1:8250", "zone": "z=1", "name": " lead"}),
    "malformed-unicode-escape": ("a=\\u12\nb=2\n", None),
}

# Edits: a file and the keys the spec sets. Every other key must read as before.
EDITS: dict[str, tuple[str, dict[str, str]]] = {
    "value-ending-in-backslash": ("a=1\nb=2\n", {"a": "C:\\dir\\"}),
    "value-ending-in-backslash-appended": ("b=2\n", {"a": "x\\", "c": "3"}),
    "value-with-u2028": ("a=1\nb=2\n", {"a": "v\u2028b=evil"}),
    "value-with-u0085": ("a=1\nb=2\n", {"a": "v\u0085b=evil"}),
    "value-with-cr-and-lf": ("a=1\nb=2\n", {"a": "v\rb=evil\nc=evil"}),
    "value-with-separators-and-comment-marks": ("a=1\n", {"a": "#x=y:z!w", "url": "http://h:8080/p?q=1"}),
    "value-with-leading-and-trailing-spaces": ("a=1\n", {"a": "  two  "}),
    "value-non-ascii-and-astral": ("a=1\n", {"a": "caf\u00e9 \u00a0\U0001F600\u4e2d"}),
    "empty-value": ("a=1\n", {"a": ""}),
    "key-spans-continuation-lines": ("x=0\na=first\\\n    second\\\n  third\nb=2\n", {"a": "new"}),
    "key-spans-continuation-lines-converged": ("a=first\\\n    second\nb=2\n", {"a": "firstsecond"}),
    "duplicates-collapsed": ("a=1\nb=2\na=first\\\n  more\n", {"a": "3"}),
    "under-commented-default": ("# a=default\nb=2\n", {"a": "1"}),
    "file-ends-in-continuation": ("a=1\\", {"b": "2"}),
    "file-ends-in-continuation-newline": ("a=1\\\n", {"b": "2"}),
    "file-without-final-newline": ("a=1", {"b": "2"}),
    "crlf-file": ("a=1\r\nb=2\r\n", {"a": "3", "c": "4"}),
    "lone-cr-file": ("a=1\rb=2\r", {"b": "3"}),
    "agent-stored-file-converged": ("#Storage\nhost=10.0.0.1\\:8250\n", {"host": "10.0.0.1:8250"}),
    "malformed-managed-value-replaced": ("a=\\u12\nb=2\n", {"a": "1"}),
    "u2028-raw-in-other-value-kept": ("x=v\u2028a=evil\na=1\n", {"a": "2"}),
    "empty-file": ("", {"network.bridge.type": "openvswitch"}),
}


def random_values(count: int) -> list[str]:
    """Deterministic awkward values: escapes, separators, blanks, controls, non-ASCII, astral characters."""
    alphabet = list("ab09 \t\\=:#!\n\r\f\x0b\x00\x7f") + ["\u0085", "\u2028", "\u00e9", "\u00ff", "\u4e2d",
                                                           "\U0001F600", "\\u", "\\\\"]
    rng = random.Random(12)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(count)]


RANDOM = random_values(200)


def edited(name: str) -> str:
    text, wanted = EDITS[name]
    return config.set_keys(text, wanted, STYLE)


@pytest.fixture(scope="module")
def java(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case loaded by the real Properties.load in one JVM run (skipped, saying why, without a JDK)."""
    problem = java_problem()
    if problem:
        pytest.skip(problem)
    names = ([("file", n) for n in FILES] + [("edit-before", n) for n in EDITS] + [("edit-after", n) for n in EDITS]
             + [("random", str(i)) for i in range(len(RANDOM))])
    texts = ([FILES[n][0] for n in FILES] + [EDITS[n][0] for n in EDITS] + [edited(n) for n in EDITS]
             + [config.set_keys("", {"k": value}, STYLE) for value in RANDOM])
    return dict(zip(names, java_load(texts, tmp_path_factory.mktemp("java-properties"))))


def port_reads(text: str) -> dict[str, str] | None:
    """What stackops reads, as a whole file (None where Java would throw)."""
    from stackops.reconcile.kvmhost import properties
    parsed = properties.parse([c for c, _ in properties.physical_lines(properties.as_java_reads(text))])
    if any(e.key is None or e.value is None for e in parsed.entries):
        return None
    return properties.load(text)


# --- the port reads what Java reads --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FILES))
def test_port_reads_what_java_reads(name: str) -> None:
    text, expected = FILES[name]
    assert port_reads(text) == expected


@pytest.mark.parametrize("name", list(FILES))
def test_real_java_reads_the_files_so(java: dict[str, Any], name: str) -> None:
    assert java[("file", name)] == FILES[name][1], "the expectation (and the port) disagree with the JDK"


@pytest.mark.parametrize("name", list(FILES))
def test_current_values_are_what_java_reads(name: str) -> None:
    text, expected = FILES[name]
    if expected is None:
        return
    keys = sorted(expected) + ["absent"]
    assert config.current_values(text, keys, STYLE) == {**expected, "absent": None}


# --- edits: Java reads the spec's values, every other key as before; a second pass plans nothing -----------------


def expected_after(name: str) -> dict[str, str]:
    text, wanted = EDITS[name]
    before = port_reads(text)
    if before is None:  # Java refuses the file before: the malformed line is the managed key's
        before = {"b": "2"}
    return {**before, **wanted}


@pytest.mark.parametrize("name", list(EDITS))
def test_edit_sets_the_values_java_reads_and_keeps_the_rest(name: str) -> None:
    assert port_reads(edited(name)) == expected_after(name)


@pytest.mark.parametrize("name", list(EDITS))
def test_real_java_reads_the_edited_files_so(java: dict[str, Any], name: str) -> None:
    text, wanted = EDITS[name]
    before = java[("edit-before", name)]
    if before is None:  # Java refuses the file before: the malformed line is the managed key's
        before = {"b": "2"}
    assert java[("edit-after", name)] == {**before, **wanted}


@pytest.mark.parametrize("name", list(EDITS))
def test_edited_file_is_converged_and_the_edit_idempotent(name: str) -> None:
    text, wanted = EDITS[name]
    after = edited(name)
    assert config.needs_change(after, wanted, STYLE) == {}, "the next pass would write (and restart) again"
    assert config.set_keys(after, wanted, STYLE) == after


@pytest.mark.parametrize("name", list(EDITS))
def test_written_lines_are_ascii_and_other_lines_keep_their_bytes(name: str) -> None:
    from stackops.reconcile.kvmhost import properties
    text, wanted = EDITS[name]
    before = properties.physical_lines(properties.as_java_reads(text))
    managed = {i for e in properties.parse([c for c, _ in before]).entries if e.key in wanted
               for i in range(e.first, e.last + 1)}
    kept = [content for i, (content, _) in enumerate(before) if i not in managed]
    after = [content for content, _ in properties.physical_lines(properties.as_java_reads(edited(name)))]
    remaining = iter(after)
    assert all(line in remaining for line in kept), "a line of another key was changed, dropped or reordered"
    assert all(line.isascii() for line in after if line not in kept)


def test_random_values_round_trip_through_the_port() -> None:
    for value in RANDOM:
        written = config.set_keys("", {"k": value}, STYLE)
        assert written.isascii() and written.count("\n") == 1, repr(written)
        assert port_reads(written) == {"k": value}, repr(written)


def test_random_values_round_trip_through_real_java(java: dict[str, Any]) -> None:
    for i, value in enumerate(RANDOM):
        assert java[("random", str(i))] == {"k": value}, repr(value)


# --- the cases of the issue, spelled out -----------------------------------------------------------------------------


def test_value_ending_in_a_backslash_does_not_swallow_the_next_key() -> None:
    assert config.set_keys("a=1\nb=2\n", {"a": "C:\\dir\\"}, STYLE) == "a=C\\:\\\\dir\\\\\nb=2\n"


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085", "\r", "\n", "\x0b", "\x0c", "\x1c"])
def test_value_with_a_line_separator_is_one_escaped_line(separator: str) -> None:
    text = config.set_keys("a=1\nb=2\n", {"a": f"v{separator}b=evil"}, STYLE)
    assert text.isascii() and text.count("\n") == 2 and "\r" not in text, repr(text)
    assert config.needs_change(text, {"a": f"v{separator}b=evil"}, STYLE) == {}
    assert config.set_keys(text, {"a": f"v{separator}b=evil"}, STYLE) == text, "the file grows every pass"


def test_a_key_spanning_continuation_lines_is_replaced_whole() -> None:
    text = "x=0\na=first\\\n    second\nb=2\n"
    assert config.needs_change(text, {"a": "firstsecond"}, STYLE) == {}
    assert config.needs_change(text, {"a": "new"}, STYLE) == {"a": "a=new"}
    assert config.set_keys(text, {"a": "new"}, STYLE) == "x=0\na=new\nb=2\n"


def test_a_file_the_agent_stored_is_converged() -> None:
    # Properties.store escapes ':' and '=': the raw text differs from the value, the value does not.
    text = "#Storage\n#Mon Jan 01 00:00:00 UTC 2024\nhost=10.0.0.1\\:8250\n"
    assert config.needs_change(text, {"host": "10.0.0.1:8250"}, STYLE) == {}


def test_appending_after_a_dangling_continuation_starts_a_new_line() -> None:
    assert config.set_keys("a=1\\", {"b": "2"}, STYLE) == "a=1\\\n\nb=2\n"


def test_a_latin1_byte_in_a_managed_value_is_the_character_java_reads() -> None:
    # the probe decodes a file's bytes as UTF-8 with surrogateescape: a lone Latin-1 byte stays that byte
    text = "guest.cpu.model=caf\xe9\n".encode("latin-1").decode("utf-8", "surrogateescape")
    assert config.current_values(text, ["guest.cpu.model"], "properties") == {"guest.cpu.model": "café"}
    assert config.needs_change(text, {"guest.cpu.model": "café"}, "properties") == {}


def test_unchanged_file_plans_nothing_and_is_kept_byte_for_byte() -> None:
    text = "# comment\r\na = 1 \r\n! other\rnetwork.bridge.type=openvswitch\nz=caf\u00e9"
    wanted = {"network.bridge.type": "openvswitch"}
    assert config.needs_change(text, wanted, STYLE) == {}
    assert config.set_keys(text, wanted, STYLE) == text + "\n"


# --- libvirt and shell files: lines end where their readers end them ---------------------------------------------


def test_libvirt_lines_do_not_end_at_unicode_separators() -> None:
    # libvirt's parser reads "# note<U+2028>listen_tcp = 0" as one comment: one assignment, converged.
    text = "# note\u2028listen_tcp = 0\nlisten_tcp = 1\n"
    assert config.needs_change(text, {"listen_tcp": True}, "libvirt") == {}
    assert config.set_keys(text, {"listen_tcp": True}, "libvirt") == text


def test_libvirt_lines_end_at_carriage_returns_as_libvirt_reads_them() -> None:
    text = "#x\rlisten_tcp = 0\n"
    assert config.current_values(text, ["listen_tcp"], "libvirt") == {"listen_tcp": "0"}
    assert config.set_keys(text, {"listen_tcp": True}, "libvirt") == "#x\rlisten_tcp = 1\n"


@pytest.mark.parametrize("separator", ["\u2028", "\u0085", "\r", "\x0b", "\x1e"])
def test_shell_lines_end_only_at_newlines(separator: str) -> None:
    text = f'X="1"{separator}LIBVIRTD_ARGS="--other"\nLIBVIRTD_ARGS="--listen"\n'
    assert config.needs_change(text, {"LIBVIRTD_ARGS": "--listen"}, "shell") == {}
    assert config.set_keys(text, {"LIBVIRTD_ARGS": "--listen"}, "shell") == text
