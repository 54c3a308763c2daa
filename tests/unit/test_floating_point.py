"""Flush-to-zero for subnormal floats: set once per process, inherited by threads created afterwards, and
what it buys on the exported ranker. Each check runs in a fresh interpreter, so the suite's own process keeps
the IEEE default."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_flush_to_zero_is_off_by_default_and_inherited_by_new_threads() -> None:
    out = _run(
        """
        import threading
        from concurrent.futures import ThreadPoolExecutor
        from services.common.floating_point import denormals_flushed, flush_denormals_to_zero
        before = denormals_flushed()
        ok = flush_denormals_to_zero()
        with ThreadPoolExecutor(2) as pool:
            in_pool = all(pool.map(lambda _: denormals_flushed(), range(4)))
        seen = []
        t = threading.Thread(target=lambda: seen.append(denormals_flushed()))
        t.start(); t.join()
        print(before, ok, denormals_flushed(), in_pool, seen[0])
        """
    )
    assert out == "False True True True True"


def test_onnxruntime_on_a_flushed_thread_gives_the_same_scores() -> None:
    """A model whose activations underflow: the same outputs with and without flushing (to float32 precision),
    computed on a thread created after the flag was set (as the ranking service's executor threads are)."""
    out = _run(
        """
        import threading
        import numpy as np, onnx, onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
        from services.common.floating_point import flush_denormals_to_zero
        rng = np.random.default_rng(0)
        w = (rng.standard_normal((64, 64)) * 1e-20).astype(np.float32)
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("MatMul", ["h", "w"], ["y"])],
            "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 64])], [numpy_helper.from_array(w, "w")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        options = ort.SessionOptions(); options.intra_op_num_threads = 1
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        x = rng.standard_normal((256, 64)).astype(np.float32)
        plain = session.run(None, {"x": x})[0]
        flush_denormals_to_zero()
        out = []
        t = threading.Thread(target=lambda: out.append(session.run(None, {"x": x})[0])); t.start(); t.join()
        flushed = out[0]
        print(int((plain != 0).sum() > 0), int((flushed == 0).all()), float(np.abs(plain - flushed).max()) < 1e-37)
        """
    )
    # Unflushed, the second product is subnormal (non-zero); flushed, it is exactly zero; they differ by < 1e-37.
    assert out == "1 1 True"
