"""When to poll the reboots in flight: pure, from how long reboots took so far.

A reboot's job is not worth asking about long before it can have ended, and is worth asking about often once it
may have. So each reboot seen to end teaches how long reboots take here (between the last poll that saw its job
pending and the poll that saw it done, from the moment CloudStack answered with the job: `learn`), the expected
time is a low quantile of the last few (`QUANTILE` of `SAMPLES`), and the next poll is, for the reboot due first:

- before it is due: when it is due, or half the expected time after the last poll (at least `poll_seconds`) if
  that comes first, for a reboot that fails early;
- once due: `fine` seconds after the last poll (a hundredth of the expected time), the wait growing by a quarter
  of how late it is, up to `poll_seconds`;
- while no reboot has been seen to end: an eighth of `poll_seconds` after it started, growing with its age the
  same way, up to `poll_seconds`.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

QUANTILE = 0.25
SAMPLES = 25
FINEST = 0.005  # seconds: the shortest wait between two polls


@dataclass
class RebootTimes:
    poll_seconds: float = 1.0  # the longest wait between two polls once a reboot is due
    samples: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))

    @property
    def expected(self) -> float | None:
        """Seconds from a reboot's job being answered to its end, None until one was seen to end."""
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        return ordered[int(QUANTILE * (len(ordered) - 1))]

    @property
    def fine(self) -> float:
        expected = self.expected
        base = self.poll_seconds / 8 if expected is None else expected / 100
        return min(max(base, FINEST), self.poll_seconds)

    def learn(self, pending: float, done: float) -> None:
        """A reboot whose job was last seen pending `pending` seconds after it was answered and done at `done`: it
        took the middle of that when polls were close, else a little less than `done` (a twentieth of it, a quarter
        of the gap at most), so that the next polls come early enough to narrow it down."""
        if done <= 0:
            return
        gap = done - max(0.0, min(pending, done))
        if gap <= 2 * self.fine:
            self.samples.append(done - gap / 2)
        else:
            self.samples.append(done - min(gap / 4, max(self.fine, done / 20)))

    def due(self, started: float) -> float:
        expected = self.expected
        return started + (expected if expected is not None else 0.0)

    def next_poll(self, now: float, last_poll: float, started: Iterable[float]) -> float | None:
        """When to poll next for reboots started (job answered) at `started`; None when there are none."""
        expected = self.expected
        cap, fine = self.poll_seconds, self.fine
        best: float | None = None
        for start in started:
            if expected is None:
                late = now - start
                when = max(last_poll, start) + min(max(late / 4, fine), cap)
            elif now < start + expected:
                when = min(start + expected, last_poll + max(cap, expected / 2))
            else:
                late = now - start - expected
                when = max(last_poll, start + expected) + min(max(late / 4, fine), cap)
            best = when if best is None else min(best, when)
        return best
