"""The ranker's serving signature: tensor names, dtypes and shapes, shared by export, both backends and the
Triton model configuration, all derived from the bundle's feature contract."""

from __future__ import annotations

from dataclasses import dataclass

from artifacts import ranker_features as rf

#: The ranker's name in bundles and in the Triton model repository.
MODEL_NAME = "mlp_ranker"
OUTPUT = "score"  # (batch, 1) float32: probability of a positive interaction


@dataclass(frozen=True)
class TensorSpec:
    name: str
    triton_dtype: str  # Triton's data type name
    numpy_dtype: str
    width: int  # the non-batch dimension


def input_specs(contract: rf.RankerContract) -> list[TensorSpec]:
    """Inputs in the order the model takes them."""
    return [
        TensorSpec("sparse", "TYPE_INT64", "int64", len(rf.SPARSE_FEATURES)),
        TensorSpec("genres", "TYPE_FP32", "float32", len(contract.genres)),
        TensorSpec("dense", "TYPE_FP32", "float32", len(rf.DENSE_FEATURES)),
    ]


def triton_version(bundle_version: str) -> int:
    """Triton model versions are positive integers; bundle versions are UTC timestamps (20261123T153018Z)."""
    digits = "".join(ch for ch in bundle_version if ch.isdigit())
    if not digits:
        raise ValueError(f"bundle version {bundle_version!r} has no digits to derive a Triton version from")
    return int(digits)


def triton_config(model_name: str, contract: rf.RankerContract, max_batch_size: int = 4096) -> str:
    """config.pbtxt for the ONNX ranker: no device is named (`instance_group` left out), so Triton puts the
    model on a GPU where there is one and on the CPU otherwise; dynamic batching merges concurrent `Rank`
    calls up to `max_batch_size` candidates."""
    inputs = ",\n".join(
        f'  {{ name: "{s.name}" data_type: {s.triton_dtype} dims: [ {s.width} ] }}' for s in input_specs(contract)
    )
    return f"""name: "{model_name}"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
input [
{inputs}
]
output [
  {{ name: "{OUTPUT}" data_type: TYPE_FP32 dims: [ 1 ] }}
]
dynamic_batching {{
  preferred_batch_size: [ 512, 1024, 2048 ]
  max_queue_delay_microseconds: 100
}}
version_policy: {{ latest: {{ num_versions: 2 }} }}
"""
