"""The benchmark's own bookkeeping: its chats, its ratios and its compile counter (no model needed)."""

import argparse
import json
from datetime import UTC

import jax
import jax.numpy as jnp

from benchmarks.compiles import CompileCounter
from benchmarks.throughput import summarise, write_chats
from tests.support import write_lines


def test_chats_cycle_the_valid_lines_with_ids_of_their_own(tmp_path):
    source = write_lines(tmp_path / "in.jsonl", [
        {"id": 1, "user_id": 2, "chat_message": "cold pizza"}, "not json", {"id": 3},
        {"id": 4, "user_id": 5, "chat_message": "hi"},
    ])
    chats = write_chats(str(source), 5, tmp_path / "chats.jsonl")
    assert [chat["chat_message"] for chat in chats] == ["cold pizza", "hi", "cold pizza", "hi", "cold pizza"]
    assert len({chat["id"] for chat in chats}) == 5
    assert [json.loads(line) for line in (tmp_path / "chats.jsonl").read_text().splitlines()] == chats


def test_summary_gives_rates_and_the_ratios_the_issue_targets():
    arguments = argparse.Namespace(
        model="m", apology_model="a", chats=16, batch_size=8, max_length=512, apology_max_length=768,
        sentiment_mode="generate", quick=True,
    )
    summary = summarise(arguments, {
        "load_average": {"start": "1.0 1.0 1.0"},
        "pipeline": {"seconds": 20.0}, "uncached": {"seconds": 50.0},
        "floor": {"seconds": 18.0, "generated_tokens": 400},
        "blueprint": {"seconds": 60.0, "generated_tokens": 400}, "recompiles": {"compiles_after_warmup": 0},
        "llamacpp": {"status": "not installed: make bench-deps"},
    })
    assert summary["pipeline"]["chats_per_s"] == 0.8 and summary["pipeline"]["tokens_per_s"] == 20.0
    assert summary["pipeline_over_floor"] == 0.9
    assert summary["pipeline_over_blueprint"] == 3.0
    assert summary["pipeline_over_uncached"] == 2.5
    assert summary["pipeline_over_llamacpp"] is None, "a phase that did not run has no ratio"
    assert summary["compiles_after_warmup"] == 0


def test_on_a_gpu_each_phase_is_set_against_its_memory_bandwidth_bound():
    arguments = argparse.Namespace(
        model="m", apology_model="a", chats=16, batch_size=8, max_length=512, apology_max_length=768,
        sentiment_mode="score", quick=False,
    )
    h100, new_gpu = ({"platform": "gpu", "kind": kind} for kind in ("NVIDIA H100 80GB HBM3", "Some New GPU"))
    summary = summarise(arguments, {
        "load_average": {"start": "1.0 1.0 1.0"},
        "pipeline": {"seconds": 2.0, "device": h100},
        "floor": {"seconds": 2.0, "generated_tokens": 400, "weight_bytes": 1_000_000_000, "device": h100},
        "blueprint": {"seconds": 10.0, "generated_tokens": 400, "device": new_gpu},
        "uncached": {"seconds": 4.0, "device": {"platform": "cpu", "kind": "cpu"}},
    })
    # 8 rows × 3,350 GB/s ÷ 1 GB of weights; the pipeline writes 200 tokens/s, 8 chats/s (25 tokens a chat).
    assert summary["pipeline"]["bandwidth_bound"] == {
        "peak_gb_s": 3350, "weight_gb": 1.0, "tokens_per_s": 26800.0, "share_of_tokens": 0.0075,
        "chats_per_s": 1072.0,
    }
    assert "unknown" in summary["blueprint"]["bandwidth_bound"]["status"]
    assert "bandwidth_bound" not in summary["uncached"], "a CPU has no such bound here"


def test_the_compile_counter_counts_new_shapes_only():
    double = jax.jit(lambda x: x * 2)
    small, large = jnp.ones(3), jnp.ones(5)
    double(small)
    with CompileCounter() as compiles:
        double(small)
        assert compiles.count == 0
        double(large)
    assert compiles.count == 1 and compiles.seconds > 0
    double(jnp.ones(7))
    assert compiles.count == 1, "uninstalled on exit"


def test_streaming_latency_is_processed_at_less_publish_time_with_interpolated_percentiles():
    from datetime import datetime, timedelta

    from benchmarks.throughput import latency_summary, percentile

    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.95) == 3.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    published = datetime(2026, 11, 21, 23, 0, tzinfo=UTC)
    # Twenty chats done 1..20 s after publishing: BigQuery gives datetimes (aware or naive UTC), review messages text.
    processed = {str(i): published + timedelta(seconds=i) for i in range(1, 19)}
    processed["19"] = (published + timedelta(seconds=19)).replace(tzinfo=None)
    processed["20"] = (published + timedelta(seconds=20)).isoformat()
    summary = latency_summary(published, processed)
    assert summary == {
        "chats": 20, "p50_s": 10.5, "p95_s": 19.05, "max_s": 20.0, "publish_to_last_s": 20.0, "first_to_last_s": 19.0,
    }
    assert latency_summary(published, {})["p50_s"] is None
