"""Template downloads as the secondary storage VM does them.

The URL is fetched for real (urllib, in a thread of its own) and the checksum computed over the bytes:
`{ALGO}hex`, or plain hex meaning MD5 (ChecksumValue). The status advances over Timings.template_download
through "N% Downloaded" and "Installing Template" (100 %) to "Download Complete" (isready true). Failures are
the SSVM's error strings (DownloadManagerImpl / HttpTemplateDownloader), shown as the status with isready
false:
- checksum mismatch: `checksum "{ALGO}<computed>" didn't match the given value, "{ALGO}<given>"`
- unknown algorithm: `checksum algorithm not recognised: <ALGO>`
- HTTP error: `HTTP Server returned <code> (expected 200 OK) `; other fetch errors: `Failed to download
  <url>: <reason>`.
"""

from __future__ import annotations

import hashlib
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stackops_lab.cloudstack.images import ALGORITHMS
from stackops_lab.cloudstack.state import Template

if TYPE_CHECKING:
    from stackops_lab.cloudstack.simulator import CloudStackSimulator

STEPS = 10


@dataclass
class Fetch:
    done: bool = False
    error: str | None = None
    size: int = 0
    digest: str = ""  # hex digest with the requested algorithm
    algorithm: str = "MD5"


def split_checksum(checksum: str) -> tuple[str, str]:
    """ChecksumValue: "{ALGO}hex" → (ALGO, hex); plain hex → ("MD5", hex)."""
    checksum = checksum.strip()
    if checksum.startswith("{") and "}" in checksum:
        algorithm, value = checksum[1:].split("}", 1)
        return algorithm, value
    return "MD5", checksum


class TemplateOps:
    def __init__(self, sim: CloudStackSimulator) -> None:
        self.sim = sim
        self.fetches: dict[str, Fetch] = {}

    def start_download(self, template: Template) -> None:
        """Begin the download (call with the state lock held)."""
        algorithm = split_checksum(template.checksum)[0] if template.checksum else "MD5"
        fetch = Fetch(algorithm=algorithm)
        self.fetches[template.uuid] = fetch
        threading.Thread(target=self.fetch, args=(template, fetch), name=f"download-{template.uuid[:8]}",
                         daemon=True).start()
        step = self.sim.timings.template_download / STEPS
        for index in range(STEPS + 1):
            self.sim.scheduler.call_later(step * index, lambda index=index: self.tick(template, fetch, index))

    def fetch(self, template: Template, fetch: Fetch) -> None:
        name = ALGORITHMS.get(fetch.algorithm.upper())
        hasher = hashlib.new(name) if name else None
        size = 0
        error = None
        try:
            with urllib.request.urlopen(template.url, timeout=60) as answer:  # noqa: S310 - lab URLs
                while chunk := answer.read(65536):
                    size += len(chunk)
                    if hasher is not None:
                        hasher.update(chunk)
        except urllib.error.HTTPError as http_error:
            error = f"HTTP Server returned {http_error.code} (expected 200 OK) "
        except (urllib.error.URLError, OSError, ValueError) as fetch_error:
            reason = getattr(fetch_error, "reason", fetch_error)
            error = f"Failed to download {template.url}: {reason}"
        with self.sim.state.lock:
            fetch.size, fetch.error, fetch.done = size, error, True
            fetch.digest = hasher.hexdigest() if hasher is not None else ""
            if error is not None:
                self.finish(template, fetch)
            elif all(ref.percent >= 100 for ref in template.zones.values()):
                self.finish(template, fetch)

    def tick(self, template: Template, fetch: Fetch, index: int) -> None:
        if not self.sim.state.live(template) or fetch.error is not None:
            return
        for ref in template.zones.values():
            if ref.download_state in ("DOWNLOADED", "DOWNLOAD_ERROR"):
                continue
            ref.download_state, ref.store_state = "DOWNLOAD_IN_PROGRESS", "Creating"
            ref.percent = min(100, index * (100 // STEPS))
        if index == STEPS and fetch.done:
            self.finish(template, fetch)

    def verdict(self, template: Template, fetch: Fetch) -> str | None:
        if fetch.error is not None:
            return fetch.error
        if not template.checksum:
            return None
        algorithm, given = split_checksum(template.checksum)
        if algorithm.upper() not in ALGORITHMS:
            return f"checksum algorithm not recognised: {algorithm}"
        if given.lower() != fetch.digest.lower():
            return (f'checksum "{{{algorithm}}}{fetch.digest}" didn\'t match the given value, '
                    f'"{{{algorithm}}}{given}"')
        return None

    def finish(self, template: Template, fetch: Fetch) -> None:
        if not self.sim.state.live(template) or self.fetches.get(template.uuid) is not fetch:
            return
        del self.fetches[template.uuid]
        error = self.verdict(template, fetch)
        for ref in template.zones.values():
            if error is None:
                ref.download_state, ref.store_state, ref.percent, ref.error = "DOWNLOADED", "Ready", 100, None
            else:
                ref.download_state, ref.store_state, ref.error = "DOWNLOAD_ERROR", "Failed", error
        if error is None:
            template.size = fetch.size
            self.sim.audit_log.record("template.ready", template=template.uuid, name=template.name,
                                      zones=list(template.zones), size=fetch.size, version=template.version)
        else:
            self.sim.audit_log.record("template.failed", template=template.uuid, name=template.name,
                                      zones=list(template.zones), error=error)
