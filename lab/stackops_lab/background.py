"""A lab simulator run as a background process of the lab (`stackops lab cloudstack`, `stackops lab xenapi`):
started by `stackops lab up`, found again through the state file it writes, stopped by `stackops lab down`."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable


def _alive(pid: int, module: str) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(part.startswith(module.encode()) for part in command)


class BackgroundSimulator:
    """Runs `python -m <module> <args> --state-file <lab>/<state>`, waits for its `ready` line and state file."""

    name = "simulator"
    module = ""
    state = ""

    def arguments(self, lab_dir: Path) -> list[str]:
        return []

    def running(self, lab_dir: Path) -> dict[str, Any] | None:
        try:
            data = json.loads((lab_dir / self.state).read_text())
        except (OSError, ValueError):
            return None
        return data if _alive(int(data["pid"]), self.module) else None

    def start(self, lab_dir: Path, cluster: Any, progress: Callable[[str], None]) -> dict[str, Any]:
        found = self.running(lab_dir)
        if found is not None:
            progress(f"the lab {self.name} already runs (pid {found['pid']})")
            return found
        log_path = lab_dir / f"{self.name}.log"
        command = [sys.executable, "-m", self.module, *self.arguments(lab_dir),
                   "--state-file", str(lab_dir / self.state)]
        with open(log_path, "ab") as log:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        assert process.stdout is not None
        if not process.stdout.readline().decode().startswith("ready "):
            process.kill()
            raise RuntimeError(f"the lab {self.name} did not start; see {log_path}")
        deadline = time.monotonic() + 10
        while (found := self.running(lab_dir)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if found is None:
            raise RuntimeError(f"the lab {self.name} wrote no state file; see {log_path}")
        progress(f"lab {self.name} running (pid {found['pid']}, log {log_path})")
        return found

    def stop(self, lab_dir: Path, progress: Callable[[str], None]) -> None:
        found = self.running(lab_dir)
        if found is None:
            return
        pid = int(found["pid"])
        progress(f"stopping the lab {self.name} (pid {pid})")
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while _alive(pid, self.module) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid, self.module):
            os.killpg(pid, signal.SIGKILL)


def serve(start: Callable[[], None], stop: Callable[[], None], *, state_file: Path | None, state: Callable[[], dict],
          ready: str, report: Callable[[str], None], banner: list[str], what: str) -> int:
    """The foreground side of a lab simulator (`stackops lab cloudstack|xenapi`): start it, write its state file
    (mode 0600, with our pid), print `ready …` on stdout, run until SIGTERM/SIGINT, then stop it and remove the
    state file."""
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        start()
        if state_file is not None:
            state_file.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as file:
                json.dump({**state(), "pid": os.getpid()}, file)
        for line in banner:
            report(line)
        print(f"ready {ready}", flush=True)
        while not stopping.wait(0.5):
            pass
        report(f"stopping the {what}")
        return 0
    finally:
        stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if state_file is not None:
            state_file.unlink(missing_ok=True)
