"""Keeping a rate-limit test inside one window of the sliding-window limit.

The sliding window (upstash-ratelimit's algorithm, which every store of Docent's follows) weighs
the previous fixed window by how much of it still overlaps: right after a roll, a previous count
of 1 weighs floor(0.99..) = 0, so "1 per 60 s" admits again. A test that expects its second
request refused fails whenever a roll falls between its requests (about one run in 30 for a 2 s
test on a 60 s window). Tests that count refusals call this first.
"""

from __future__ import annotations

import time


def clear_of_window_roll(window_s: float, margin_s: float = 30.0) -> float:
    """If the next roll of a `window_s` window (aligned to the epoch, as the limiter's are) is
    less than `margin_s` away, sleep until just past it. Returns the seconds slept."""
    into = time.time() % window_s
    wait = window_s - into + 0.05 if window_s - into < margin_s else 0.0
    if wait:
        time.sleep(wait)
    return wait
