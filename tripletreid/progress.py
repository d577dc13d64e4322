"""One progress line for every long step (image checks, embedding, re-ranking, indexing).

On a terminal it is tqdm's line, redrawn in place with a rate and an ETA. Elsewhere (CI, `nohup`,
a log file) a redrawn line would be one long run of carriage returns, so it becomes a few plain
lines instead: one at each quarter of the work, with the same count, rate and ETA.
"""
import sys
import time

QUARTERS = 4


class _LogLines:
    """tqdm's `update`/`close` interface, printing a plain line at each quarter of `total`."""

    def __init__(self, total, desc, unit, file):
        self.total, self.desc, self.unit, self.file = total, desc, unit, file
        self.done, self.began, self.next_quarter = 0, time.perf_counter(), 1

    def update(self, count=1):
        self.done += count
        reached = self.next_quarter
        while self.total and self.next_quarter <= QUARTERS and (
                self.done * QUARTERS >= self.next_quarter * self.total):
            self.next_quarter += 1
        if self.next_quarter > reached:  # one line however many quarters this piece passed
            self._line()

    def _line(self):
        from tqdm import tqdm  # see `bar`
        elapsed = time.perf_counter() - self.began
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        print(f'{self.desc}: {self.done}/{self.total} {self.unit}s '
              f'({rate:.1f} {self.unit}s/s, {tqdm.format_interval(elapsed)} elapsed, '
              f'{tqdm.format_interval(left)} left)', file=self.file, flush=True)

    def set_postfix_str(self, text):
        """Ignored: the plain lines carry the count, the rate and the time only."""

    def close(self):
        if not self.total and self.done:
            self._line()


def bar(total, desc, unit='image', quiet=False, file=None):
    """A progress counter over `total` units: `.update(n)` after each piece, `.close()` at the
    end. A tqdm line on a terminal, four plain lines elsewhere, nothing when `quiet`."""
    from tqdm import tqdm  # here: importing it takes a tenth of a second, which scripts that
    # never draw a line (evaluate.py without re-ranking) should not pay at their start
    file = file or sys.stderr
    if quiet:
        return tqdm(total=total, disable=True)
    if file.isatty():
        return tqdm(total=total, desc=desc, unit=unit, file=file, dynamic_ncols=True,
                    smoothing=0.1)
    return _LogLines(total, desc, unit, file)
