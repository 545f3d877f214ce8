"""Retrying a call with capped exponential backoff and jitter."""
import random
import time


class RetryError(Exception):
    """Raised when every attempt failed; holds the last exception."""

    def __init__(self, attempts, last):
        super().__init__(f"gave up after {attempts} attempts: {last}")
        self.attempts = attempts
        self.last = last


def backoff_delays(initial=0.1, cap=5.0, factor=2.0):
    """Yields the waits between attempts: initial, doubled each time, never above cap."""
    delay = initial
    while True:
        yield delay
        delay = min(cap, delay * factor)


def retry(call, attempts=6, initial=0.1, cap=5.0, retry_on=(ConnectionError, TimeoutError)):
    """Calls call() until it succeeds; sleeps a jittered backoff between attempts."""
    last = None
    delays = backoff_delays(initial, cap)
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except retry_on as e:
            last = e
            if attempt == attempts:
                break
            time.sleep(next(delays) * random.uniform(0.5, 1.0))
    raise RetryError(attempts, last)
