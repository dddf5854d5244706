"""Progress reporting for the tools: a tqdm bar on a terminal, plain periodic lines in a log file.

A bar redraws itself with carriage returns, which turns a log file into one unreadable line; when
stderr is not a terminal the same calls print one plain line per tenth of the work instead (and at
the end), e.g. ``infer: 340/1700 img (20%), 131 s``. DSRG_PROGRESS=bars asks for bars on a pipe
that ends on a terminal: run.sh sets it when it copies its output to a run log (which it keeps free
of the carriage-return states).
"""
import os
import sys
import time


class PlainProgress:
    """tqdm's `update` / `write` / `close` and iteration, as plain lines on stderr, one per tenth of `total`."""

    def __init__(self, iterable=None, total=None, desc="", unit="it", initial=0):
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc, self.unit = desc, unit
        self.done = self.start = initial
        self.next_report = initial
        self.started = time.monotonic()
        self.closed = False

    def _report(self):
        elapsed = time.monotonic() - self.started
        share = f" ({100 * self.done // self.total}%)" if self.total else ""
        of = f"/{self.total}" if self.total else ""
        print(f"{self.desc}: {self.done}{of} {self.unit}{share}, {elapsed:.0f} s", file=sys.stderr, flush=True)

    def update(self, count=1):
        self.done += count
        if self.total and (self.done >= self.next_report or self.done >= self.total):
            self._report()
            self.next_report = self.done + max(1, (self.total - self.start) // 10)

    @staticmethod
    def write(message):
        print(message, flush=True)

    def close(self):
        if not self.closed and self.total and self.done < self.total:
            self._report()
        self.closed = True

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()


class _Silent(PlainProgress):
    def _report(self):
        pass


def progress(iterable=None, total=None, desc="", unit="it", initial=0, disable=False):
    """A tqdm bar when stderr is a terminal, PlainProgress otherwise, nothing printed when `disable`.

    Use it as tqdm: iterate over it, or call update()/write()/close().
    """
    if disable:
        return _Silent(iterable, total, desc, unit, initial)
    if sys.stderr.isatty() or os.environ.get("DSRG_PROGRESS") == "bars":
        from tqdm import tqdm
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True)
    return PlainProgress(iterable, total, desc, unit, initial)
