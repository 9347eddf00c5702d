"""A GPU's memory-bandwidth bound on decoding: each step reads every weight once, so a batch of B rows writes at
most B × bandwidth / weight bytes tokens a second (while its key/value cache stays small next to the weights)."""

from __future__ import annotations

# Peak memory bandwidth in GB/s by JAX's `device_kind`, from NVIDIA's data sheets.
PEAK_GB_S = {
    "NVIDIA H100 80GB HBM3": 3350,
    "NVIDIA H100 PCIe": 2000,
    "NVIDIA H100 NVL": 3900,
    "NVIDIA H200": 4800,
    "NVIDIA A100-SXM4-80GB": 2039,
    "NVIDIA A100-SXM4-40GB": 1555,
    "NVIDIA A100 80GB PCIe": 1935,
    "NVIDIA A100-PCIE-40GB": 1555,
    "NVIDIA L40S": 864,
    "NVIDIA A10G": 600,
    "NVIDIA L4": 300,
    "Tesla V100-SXM2-16GB": 900,
    "Tesla T4": 320,
}


def device() -> dict[str, str]:
    """The platform (cpu, gpu, tpu) and kind of the device JAX runs on."""
    import jax

    first = jax.devices()[0]
    return {"platform": first.platform, "kind": first.device_kind}


def bound(device: dict[str, str], weight_bytes: int, rows: int, tokens_per_s: float, chats_per_s: float) -> dict:
    """A phase's tokens/s and chats/s against the bound of its batch `rows` on a GPU `device`."""
    peak = PEAK_GB_S.get(device["kind"])
    if peak is None:
        return {"status": f"peak bandwidth of {device['kind']!r} unknown: add it to benchmarks/bandwidth.py"}
    tokens_bound = rows * peak * 1e9 / weight_bytes
    return {
        "peak_gb_s": peak,
        "weight_gb": round(weight_bytes / 1e9, 3),
        "tokens_per_s": round(tokens_bound, 1),
        "share_of_tokens": round(tokens_per_s / tokens_bound, 4),
        # At the phase's own tokens per chat.
        "chats_per_s": round(tokens_bound * chats_per_s / tokens_per_s, 2),
    }
