"""The operator image's size and build times (`stackops lab image`, stackops_lab/image.py), from nothing.

Everything happens in a cache directory of its own ($STACKOPS_CACHE set to a temporary directory: buildah's storage,
the base, the archives), on a copy of this checkout's build context, so neither the machine's cache nor the work tree
is touched. Measured, in order:
  1. the base: debootstrap of Debian + `buildah commit` (what a machine without a registry does once);
  2. the image, cold: no layer cached (base made in 1.);
  3. the same tree again: the archive of its context's hash is reused;
  4. the same tree, archive removed: every layer from buildah's cache;
  5. one file of operator/ changed: the stackops wheel and its install rebuilt, the dependencies' layers reused;
     the new image is checked to hold the change.
Sizes: the OCI archive (compressed layers) and the image's root filesystem unpacked.

Run as root: `.venv/bin/python bench/image_build.py` (about 2 minutes on 2 cores). Two runs on the 2-core development
machine (busy with other work): base 61 s, cold image 43-47 s; unchanged tree 0.1 s; layers only 6.4-6.7 s; one file
of operator/ changed 9.1-10.8 s (0.21-0.23 of the cold image build, 0.09-0.10 of the first build with its base);
archive 97 MB, unpacked 363 MB (base 150 MB).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(what: str, call):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    result = call()
    seconds = time.monotonic() - started
    print(f"{what}: {seconds:.1f} s", flush=True)
    return result, seconds


def unpacked_bytes(image_module, name: str) -> int:  # type: ignore[no-untyped-def]
    with image_module.mounted(name) as rootfs:
        return int(subprocess.run(["du", "-sxb", str(rootfs)], capture_output=True, text=True,
                                  check=True).stdout.split()[0])


def main() -> int:
    if os.geteuid() != 0:
        print("run as root (buildah and debootstrap)", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="stackops-image-bench-", dir=os.environ.get("TMPDIR", "/var/tmp")))
    os.environ["STACKOPS_CACHE"] = str(scratch / "cache")
    from stackops_lab import image  # after STACKOPS_CACHE: everything below uses the scratch cache

    try:
        source = scratch / "source"
        source.mkdir()
        image.stage_context(REPO, source)
        (scratch / "cache").mkdir()
        progress = lambda message: print(f"  [{message}]", flush=True)  # noqa: E731
        base, base_s = timed("1. base (debootstrap + commit)", lambda: image.ensure_base(progress))
        cold, cold_s = timed("2. image, cold (no layer cached)", lambda: image.build(progress, source=source))
        assert cold.built
        cached, cached_s = timed("3. unchanged tree (archive reused)", lambda: image.build(progress, source=source))
        assert not cached.built and cached.archive == cold.archive
        cold.archive.unlink()
        layers, layers_s = timed("4. unchanged tree, archive removed (layers cached)",
                                 lambda: image.build(progress, source=source))
        assert layers.built
        mark = uuid.uuid4().hex
        with open(source / "operator" / "stackops" / "__init__.py", "a") as module:
            module.write(f"\nIMAGE_BENCH_MARK = {mark!r}\n")
        changed, changed_s = timed("5. one file of operator/ changed", lambda: image.build(progress, source=source))
        assert changed.built and changed.archive != cold.archive
        shown = image.run_in_image(changed.name, ["-c", "import stackops; print(stackops.IMAGE_BENCH_MARK)"],
                                   entrypoint=["python"])
        assert shown.stdout.strip() == mark, f"the changed file is not in the new image: {shown}"
        archive_mb = changed.archive.stat().st_size / 1e6
        unpacked_mb = unpacked_bytes(image, changed.name) / 1e6
        base_mb = unpacked_bytes(image, base) / 1e6
        first = base_s + cold_s
        print()
        print(f"image: OCI archive {archive_mb:.0f} MB (compressed), unpacked {unpacked_mb:.0f} MB "
              f"(its Debian base {base_mb:.0f} MB)")
        print(f"first build, base included: {first:.0f} s (base {base_s:.0f} s, image {cold_s:.0f} s)")
        for label, seconds in (("unchanged tree", cached_s), ("unchanged tree, layers only", layers_s),
                               ("one file of operator/ changed", changed_s)):
            print(f"{label}: {seconds:.1f} s = {seconds / first:.3f} of the first build, "
                  f"{seconds / cold_s:.3f} of the cold image build")
        return 0
    finally:
        storage = scratch / "cache" / "containers"
        if storage.exists():
            subprocess.run(image.buildah_command("rm", "--all"), capture_output=True, check=False)
            subprocess.run(image.buildah_command("rmi", "--all", "--force"), capture_output=True, check=False)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
