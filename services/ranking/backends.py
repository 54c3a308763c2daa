"""Where the ranker runs: in this process (onnxruntime, the embedded default) or on a Triton server.

Both take the same encoded batch and return one probability per row, so the ranking service and the tests
treat them alike. The Triton backend keeps one long-lived async client, sends all candidates of a `Rank`
call in one inference request with a deadline, and forwards the W3C trace context in the request headers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
from opentelemetry.propagate import inject
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc import aio as triton_aio
from tritonclient.utils import InferenceServerException

from artifacts import ranker_features as rf
from artifacts.ranker_signature import OUTPUT, input_specs
from services.common.compute import ComputeRunner
from services.common.errors import FailedPrecondition, Unavailable
from services.common.telemetry import tracer

TRACER = tracer(__name__)
READY_TIMEOUT_S = 2.0  # how long a readiness check waits for Triton's answer


class RankerBackend(Protocol):
    name: str

    async def scores(self, make_batch: Callable[[], rf.EncodedBatch], timeout_s: float) -> np.ndarray:
        """(n,) float32 probabilities for the n rows of the batch `make_batch` encodes (off the event loop)."""
        ...

    async def close(self) -> None: ...


def _arrays(batch: rf.EncodedBatch) -> dict[str, np.ndarray]:
    return {"sparse": batch.sparse, "genres": batch.genres, "dense": batch.dense}


class InProcessBackend:
    """onnxruntime on the bundle's ONNX file, one intra-op thread (steady latency next to the event loop)."""

    name = "inprocess"

    def __init__(self, onnx_path: Path, contract: rf.RankerContract, compute: ComputeRunner | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        expected = [s.name for s in input_specs(contract)]
        got = [i.name for i in self.session.get_inputs()]
        if got != expected:
            raise FailedPrecondition(f"ranker ONNX inputs are {got}; the feature contract feeds {expected}")
        self.compute = compute or ComputeRunner("inline", 1, "onnx")  # the service's runner outlives its backends

    def run(self, batch: rf.EncodedBatch) -> np.ndarray:
        return self.session.run([OUTPUT], _arrays(batch))[0][:, 0]

    async def scores(self, make_batch: Callable[[], rf.EncodedBatch], timeout_s: float) -> np.ndarray:
        # Encoding and inference together: were they in a pool, one hop costs more than the model at this size.
        return await self.compute.run(lambda: self.run(make_batch()))

    async def close(self) -> None:
        return None


class TritonBackend:
    """tritonclient.grpc.aio against a Triton server serving the bundle's model version."""

    name = "triton"

    def __init__(
        self,
        url: str,
        model_name: str,
        model_version: int,
        contract: rf.RankerContract,
        compute: ComputeRunner | None = None,
    ) -> None:
        self.compute = compute or ComputeRunner("inline", 1, "encode")
        self.client = triton_aio.InferenceServerClient(url=url)
        self.url = url
        self.model_name = model_name
        self.model_version = str(model_version)
        self.specs = input_specs(contract)

    async def check_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Fails unless the server has this bundle's model version loaded; a server that accepts the connection
        but does not answer fails it too, within `timeout_s`."""
        try:
            ready = await self.client.is_model_ready(self.model_name, self.model_version, client_timeout=timeout_s)
        except Exception as exc:  # tritonclient raises InferenceServerException and grpc errors
            raise Unavailable(f"Triton at {self.url} is unreachable: {exc}") from exc
        if not ready:
            raise Unavailable(f"Triton at {self.url} has not loaded {self.model_name} version {self.model_version}")

    async def scores(self, make_batch: Callable[[], rf.EncodedBatch], timeout_s: float) -> np.ndarray:
        batch = await self.compute.run(make_batch)
        arrays = _arrays(batch)
        inputs = []
        for spec in self.specs:
            tensor = InferInput(spec.name, list(arrays[spec.name].shape), spec.triton_dtype.removeprefix("TYPE_"))
            tensor.set_data_from_numpy(np.ascontiguousarray(arrays[spec.name], dtype=spec.numpy_dtype))
            inputs.append(tensor)
        with TRACER.start_as_current_span("triton.infer") as span:
            span.set_attribute("recsys.triton.model", self.model_name)
            span.set_attribute("recsys.triton.version", self.model_version)
            span.set_attribute("recsys.candidates.count", len(batch.sparse))
            headers: dict[str, str] = {}
            inject(headers)  # W3C traceparent of this span, so Triton's own trace joins ours
            try:
                result = await self.client.infer(
                    self.model_name,
                    inputs,
                    model_version=self.model_version,
                    outputs=[InferRequestedOutput(OUTPUT)],
                    client_timeout=timeout_s,
                    headers=headers,
                )
            except InferenceServerException as exc:
                raise Unavailable(f"Triton inference failed ({self.url}): {exc.message()}") from exc
        out = result.as_numpy(OUTPUT)
        if out is None or out.shape[0] != batch.sparse.shape[0]:
            raise Unavailable(f"Triton returned no '{OUTPUT}' for {batch.sparse.shape[0]} rows")
        return out[:, 0].astype(np.float32)

    async def close(self) -> None:
        await self.client.close()
