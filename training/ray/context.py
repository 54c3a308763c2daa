"""training/loop.py's TrainContext inside a Ray Train worker."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.loop import unwrap
from training.ray.checkpoint import STATE_DICT

log = logging.getLogger("training.ray")


class RayTrainContext:
    """training/loop.py's TrainContext for a Ray Train worker.

    prepare_model: `ray.train.torch.prepare_model` (DistributedDataParallel when world_size > 1).
    shard: this worker's contiguous slice of one seeded permutation; every worker draws the same permutation
    from its identically seeded generator. The permutation is padded by wrapping around to a multiple of the
    world size, so all workers run the same number of steps (unequal step counts would hang DDP).
    report: the loss is averaged and samples/s summed over workers (the run's throughput); rank 0 attaches a
    checkpoint with the model's state_dict, the other ranks report the same metrics without one. With
    `report_every` > 1 only every n-th epoch (and the last) goes to Ray Train; every epoch is still logged and
    kept in the history. All ranks follow the same rule, so they call ray.train.report equally often.
    """

    def __init__(self, run: str, epochs: int | None = None, report_every: int = 1) -> None:
        import ray.train

        context = ray.train.get_context()
        self.world_size: int = context.get_world_size()
        self.rank: int = context.get_world_rank()
        self.run = run
        self.epochs = epochs
        self.report_every = max(report_every, 1)
        self.report_s = 0.0  # time spent in ray.train.report (checkpoint upload, waiting for the controller)
        self.log_s = 0.0
        self.history: list[dict[str, float]] = []
        self.prepare_s = 0.0
        self._last = time.perf_counter()

    def prepare_model(self, model: nn.Module) -> nn.Module:
        import ray.train.torch

        started = time.perf_counter()
        prepared = ray.train.torch.prepare_model(model)
        self._last = time.perf_counter()
        self.prepare_s = self._last - started
        return prepared

    def shard(self, n: int, rng: np.random.Generator) -> np.ndarray:
        perm = rng.permutation(n)
        per_worker = -(-n // self.world_size)
        perm = np.resize(perm, per_worker * self.world_size)  # wraps around when n is not a multiple
        return perm[self.rank * per_worker : (self.rank + 1) * per_worker]

    def _all_workers(self, metrics: dict[str, float]) -> dict[str, float]:
        now = time.perf_counter()
        out = {k: float(v) for k, v in metrics.items()}
        out["epoch_s"] = now - self._last
        self._last = now
        if self.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            keys = [k for k in ("loss", "samples_per_s") if k in out]
            values = torch.tensor([out[k] for k in keys] + [out["epoch_s"]], dtype=torch.float64)
            torch.distributed.all_reduce(values)
            for key, total in zip(keys, values[:-1].tolist(), strict=True):
                if key == "samples_per_s":
                    out["worker_samples_per_s"] = out[key]
                    out[key] = total
                else:
                    out[key] = total / self.world_size
        out["workers"] = float(self.world_size)
        return out

    def report(self, metrics: dict[str, float], model: nn.Module | None = None) -> None:
        out = self._all_workers(metrics)
        self.history.append(out)
        if self.rank == 0:
            started = time.perf_counter()
            self._log(out)
            self.log_s += time.perf_counter() - started
        epoch = int(out.get("epoch", len(self.history)))
        if epoch % self.report_every and epoch != self.epochs:
            return
        started = time.perf_counter()
        self._report(out, model if self.rank == 0 else None)
        self.report_s += time.perf_counter() - started

    def _report(self, out: dict[str, float], model: nn.Module | None) -> None:
        import ray.train

        if model is None:
            ray.train.report(out)
            return
        with tempfile.TemporaryDirectory(prefix="ckpt-") as tmp:
            torch.save(unwrap(model).state_dict(), Path(tmp) / STATE_DICT)
            ray.train.report(out, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    def _log(self, out: dict[str, float]) -> None:
        total = f"/{self.epochs}" if self.epochs else ""
        log.info(  # one progress line per epoch, in the driver's output and the job's logs
            f"[{self.run}] epoch {int(out.get('epoch', len(self.history)))}{total}"
            f"  loss {out.get('loss', float('nan')):.4f}"
            f"  {out.get('samples_per_s', 0.0):,.0f} samples/s ({self.world_size} workers)"
            f"  {out['epoch_s']:.2f}s"
        )

    def timings(self) -> dict[str, float]:
        """What the final report carries about this worker's reporting."""
        return {"prepare_model_s": self.prepare_s, "report_s": self.report_s, "log_s": self.log_s}


def warm_up_optimizer() -> None:
    """One optimiser step on a throw-away parameter. A fresh process pays ~1.6 s for its first one (torch
    imports torch._dynamo lazily there); paid here, it counts as the worker's start-up rather than as the
    first epoch, as in a long-lived process (and the benchmark's plain runs, which warm up the same way)."""
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param])
    param.sum().backward()
    opt.step()
