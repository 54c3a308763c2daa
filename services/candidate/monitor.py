"""Recall monitor: a sample of live ANN queries answered again exactly, off the request path.

`offer()` is called on the request thread with the ANN's answer; it only draws a random number and, for the
sampled share, hands the probe to one background thread (dropped when that thread is still busy, so the
monitor never queues work or slows requests). recall@k of the ANN against exact search over the same allowed
rows goes to `metrics().ann_recall` and, every `log_every` samples, to the log.
"""

from __future__ import annotations

import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from artifacts.ann_index import AnnIndex
from services.candidate.query import AnnProbe
from services.common.telemetry import metrics

log = logging.getLogger(__name__)


class RecallMonitor:
    def __init__(self, rate: float, k: int, log_every: int = 100, seed: int | None = None) -> None:
        self.rate = rate
        self.k = k
        self.log_every = log_every
        self._rng = random.Random(seed)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recall")
        self._busy = threading.Semaphore(1)
        self._lock = threading.Lock()
        self.samples = 0
        self.dropped = 0
        self.recall_sum = 0.0
        self.last_recall: float | None = None

    def sampled(self) -> bool:
        return self.rate > 0 and self._rng.random() < self.rate

    def offer(self, index: AnnIndex, probe: AnnProbe) -> None:
        if not self._busy.acquire(blocking=False):
            with self._lock:
                self.dropped += 1
            return
        try:
            self._executor.submit(self._measure, index, probe)
        except RuntimeError:  # shut down
            self._busy.release()

    def _measure(self, index: AnnIndex, probe: AnnProbe) -> None:
        try:
            k = min(self.k, probe.k)
            exact_rows, _ = index.exact_search(probe.query, k, probe.allowed)
            truth = exact_rows[0][exact_rows[0] >= 0]
            if not len(truth):
                return
            recall = len(np.intersect1d(truth, probe.rows[:k])) / len(truth)
            metrics().ann_recall.record(recall, {"index": index.spec.kind, "k": k})
            with self._lock:
                self.samples += 1
                self.recall_sum += recall
                self.last_recall = recall
                n, mean = self.samples, self.recall_sum / self.samples
            if n % self.log_every == 1 or recall < 0.9:
                log.info("ann recall@%d %.3f (mean %.3f over %d sampled queries, %s)", k, recall, mean, n,
                         index.spec.kind)  # fmt: skip
        except Exception:
            log.exception("recall monitor failed")
        finally:
            self._busy.release()

    @property
    def mean_recall(self) -> float | None:
        with self._lock:
            return self.recall_sum / self.samples if self.samples else None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
