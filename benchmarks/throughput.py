"""Throughput of the triage pipeline against the bare model and against the blueprint's per-element handler.

    python -m benchmarks.throughput [--quick] [--chats N] [--batch_size B] [--model PRESET] [--apology_model PRESET]

On the same N chats, the same models (the jobs' two LoRAs by default) and the same `max_length`, each in a
process of its own (so that peak memory and compilations are its own):

1. `floor`: the model alone, KerasHub `generate()` on batches of B prompts in a plain loop, at the sequence
   lengths the project's handler would choose (so the ratio isolates what the pipeline adds);
2. `pipeline`: the batch job end to end (`pipeline.batch.build_pipeline`, JSON Lines in and out) on
   `FnApiRunner`; `streaming` (with `--streaming`, or named in `--phases`): the streaming job on the local stack
   (`measure_streaming`), chats/s, p50/p95 latency per chat and compilations after a warm-up;
3. `blueprint`: one `generate()` call per prompt at the full `max_length`, as the blueprint's handler did;
4. `recompiles`: the project's handler, warmed up at load (`--warm_up`), fed a stream of varied batch sizes and
   chat lengths, counting XLA compilations after the warm-up.

The floor and the blueprint run exactly the prompts the pipeline ran: the triage prompt of every chat, then the
apology prompt of every chat the pipeline found negative (with the summary it wrote). With `--sentiment_mode
score` they also make the handler's scoring pass first (its calibration pass once) and generate what follows
the picked label, as the pipeline does. Seconds are measured
without model loading and without JAX compilation (both reported apart), so that the figures are steady-state
throughput. The summary is printed as JSON on the last line.
"""

from __future__ import annotations

import argparse
import collections
import glob
import itertools
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import bandwidth

REPO = Path(__file__).resolve().parent.parent
PHASES = ("pipeline", "uncached", "floor", "blueprint", "recompiles", "llamacpp")
# Quick mode: under 5 minutes on two idle cores with Gemma 3 270M. Each phase costs a process start, imports and a
# model load (about 30 s) besides its chats; `recompiles` (a warm-up at load, about 80 s on a loaded machine) runs
# only when named: the tests and the streaming phase check compilations after warm-up.
QUICK = {"chats": 8, "phases": ("pipeline", "uncached", "floor", "blueprint", "llamacpp"), "recompile_batch_size": 2}
# Makes a chat about 150 tokens longer, into the next length bucket.
_LONGER = " Let me repeat it: the order was late, the food was cold, the driver was rude, and nobody answered." * 5


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default=None, help="KerasHub preset (default: the jobs' default, `pipeline.models.default_model()`)."
    )
    parser.add_argument(
        "--apology_model", default=None,
        help="KerasHub preset of the apology step (default: as the jobs pick it, `pipeline.models.use_default_model`).",
    )
    parser.add_argument("--input", default=str(REPO / "samples" / "chats.jsonl"), help="JSON Lines chats to cycle.")
    parser.add_argument("--chats", type=int, default=64, help="Chats per run (N).")
    parser.add_argument("--batch_size", type=int, default=8, help="Prompts per generate() call (B).")
    parser.add_argument("--max_length", type=int, default=512, help="Triage max_length, prompt plus reply.")
    parser.add_argument("--apology_max_length", type=int, default=768, help="Apology max_length.")
    # In `score` mode (the jobs' default) the floor and the blueprint make the handler's scoring pass too, then
    # generate what follows the picked label: the same work as the pipeline.
    parser.add_argument(
        "--sentiment_mode", default="score", choices=("generate", "score"),
        help="The triage mode the pipeline runs (and the floor and the blueprint imitate).",
    )
    parser.add_argument(
        "--quick", action="store_true",
        help=f"Fewer chats ({QUICK['chats']}) and phases ({','.join(QUICK['phases'])} unless --phases names others): "
        "under 5 minutes.",
    )
    parser.add_argument(
        "--phases", default=None,
        help="Comma-separated subset of " + ",".join((*PHASES, "streaming")) + " (default: all but streaming).",
    )
    parser.add_argument("--streaming", action="store_true", help="Also run the streaming job on the local stack.")
    parser.add_argument("--workdir", default=None, help="Where chats and outputs go (default: a temporary folder).")
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)  # internal: run one phase in this process
    arguments = parser.parse_args(argv)
    if arguments.quick:
        arguments.chats = QUICK["chats"]
    if arguments.phases is None:
        arguments.phases = ",".join(QUICK["phases"] if arguments.quick else PHASES)
    return arguments


# --- Shared helpers ----------------------------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    """Peak resident set size of this process (VmHWM) and of its finished children, in MiB."""
    own = next(
        (
            int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
            if line.startswith("VmHWM:")
        ),
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    )
    return round(max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024, 1)


def _children_cpu_s() -> float:
    """User and system CPU seconds of this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _load_avg() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` shows them."""
    return " ".join(open("/proc/loadavg").read().split()[:3])


def write_chats(source: str, count: int, path: Path) -> list[dict]:
    """`count` chats cycled from the valid chat lines of `source`, each with an id of its own."""
    valid = []
    for line in Path(source).read_text("utf-8").splitlines():
        try:
            chat = json.loads(line)
        except ValueError:
            continue
        if isinstance(chat, dict) and isinstance(chat.get("chat_message"), str) and "user_id" in chat:
            valid.append(chat)
    chats = [{**chat, "id": f"bench-{index}"} for index, chat in zip(range(count), itertools.cycle(valid))]
    path.write_text("".join(json.dumps(chat, ensure_ascii=False) + "\n" for chat in chats), "utf-8")
    return chats


def _models(arguments) -> tuple[str, str]:
    """The triage and apology presets, chosen as the jobs choose them."""
    from pipeline.models import use_default_model
    from pipeline.options import TriageOptions

    named = {"--model": arguments.model, "--apology_model": arguments.apology_model}
    options = TriageOptions([f"{flag}={preset}" for flag, preset in named.items() if preset])
    use_default_model(options)
    return options.model, options.apology_model or options.model


def _prompts(arguments, workdir: Path):
    """The triage prompts of every chat and the apology prompts of the chats the pipeline found negative."""
    from pipeline.prompts import Family, SentimentMode, detect_family, load_prompt, prompt_name

    family: Family = detect_family(arguments.model)
    triage = load_prompt(prompt_name("triage", family, SentimentMode(arguments.sentiment_mode)))
    apology = load_prompt(prompt_name("apology", detect_family(arguments.apology_model)))
    chats = [json.loads(line) for line in (workdir / "chats.jsonl").read_text("utf-8").splitlines()]
    triage_prompts = [triage.render(chat=chat["chat_message"], user_id=chat["user_id"]) for chat in chats]
    reviews = [
        json.loads(line)
        for path in sorted(glob.glob(str(workdir / "out" / "negative*.jsonl")))
        for line in Path(path).read_text("utf-8").splitlines()
    ]
    apology_prompts = [
        apology.render(chat=review["chat_message"], user_id=review["user_id"], summary=review["summary"])
        for review in reviews
    ]
    return (triage, triage_prompts), (apology, apology_prompts)


# --- Phases (each runs in a process of its own) --------------------------------------------------------------------


def phase_pipeline(arguments, workdir: Path, prefix_cache: bool = True) -> dict:
    """The batch job end to end on FnApiRunner (`uncached`: with `--prefix_cache false`)."""
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions

    from benchmarks.compiles import CompileCounter
    from handlers.gemma import usage_metric
    from handlers.generator import USAGE
    from pipeline import batch
    from pipeline.graph import TriageChats
    from pipeline.models import APOLOGY_NAMESPACE, TRIAGE_NAMESPACE
    from pipeline.options import TriageOptions

    options = PipelineOptions([
        "--runner", "FnApiRunner", "--model", arguments.model, "--apology_model", arguments.apology_model,
        "--sentiment_mode", arguments.sentiment_mode,
        "--max_length", str(arguments.max_length), "--apology_max_length", str(arguments.apology_max_length),
        "--max_batch_size", str(arguments.batch_size), "--prefix_cache", str(prefix_cache).lower(),
    ])
    pipeline = beam.Pipeline(options=options)
    batch.build_pipeline(
        pipeline, str(workdir / "chats.jsonl"), str(workdir / ("out" if prefix_cache else "out-uncached")),
        TriageChats.from_options(options.view_as(TriageOptions)),
    )
    with CompileCounter() as compiles:
        started = time.monotonic()
        result = pipeline.run()
        result.wait_until_finish()
        wall = time.monotonic() - started
    metrics = {}
    for namespace in (TRIAGE_NAMESPACE, APOLOGY_NAMESPACE):
        found = result.metrics().query(MetricsFilter().with_namespace(namespace))
        counters = {c.key.metric.name: c.committed for c in found["counters"]}
        distributions = {d.key.metric.name: d.committed for d in found["distributions"]}
        load = distributions.get("load_model_latency_milli_secs")
        sizes = distributions.get("batch_size")
        metrics[namespace] = {
            "prompts": counters.get("prompts", 0),
            "generate_calls": counters.get("generate_calls", 0),
            "mean_batch": round(sizes.mean, 2) if sizes and sizes.count else None,
            "model_loads": load.count if load else 0,
            "load_s": round(load.sum / 1000, 1) if load else 0.0,
            "usage": {name: counters.get(usage_metric(name), 0) for name in USAGE},
        }
    load_s = sum(m["load_s"] for m in metrics.values())
    outputs = {}
    for path in glob.glob(str(workdir / ("out" if prefix_cache else "out-uncached") / "*")):
        with open(path) as lines:
            outputs[Path(path).name.split("-")[0]] = sum(1 for _ in lines)
    return {
        "wall_s": round(wall, 1), "load_s": load_s, "compile_s": round(compiles.seconds, 1),
        "compiles": compiles.count, "seconds": round(wall - load_s - compiles.seconds, 1),
        "models": metrics, "outputs": outputs,
        "usage": _per_chat({
            name: sum(m["usage"][name] / (1000 if name.endswith("_s") else 1) for m in metrics.values())
            for name in USAGE
        }, arguments.chats),
    }


def phase_uncached(arguments, workdir: Path) -> dict:
    """The batch job with the prefix cache off: every prompt prefilled whole, the summary's apart from the label's."""
    return phase_pipeline(arguments, workdir, prefix_cache=False)


def _per_chat(usage: dict[str, float], chats: int) -> dict:
    """`KerasHubGenerator.usage` of a phase: token positions per chat and seconds in all, per stage."""
    return {
        **{name: round(value, 1) for name, value in usage.items() if name.endswith("_s")},
        **{f"{name}_per_chat": round(value / chats, 1) for name, value in usage.items() if name.endswith("_tokens")},
    }


def _run_bare(arguments, per_element: bool) -> dict:
    """The model alone, without Beam: the floor (batches of B at bucketed lengths, as the handler runs them) or
    the blueprint (one call per prompt at the full `max_length`, as its handler did)."""
    from benchmarks.compiles import CompileCounter
    from handlers import lora
    from handlers.generator import KerasHubGenerator
    from pipeline.models import APOLOGY_REPLY_TOKENS, TRIAGE_REPLY_TOKENS, handler_prompt_args

    workdir = Path(arguments.workdir)
    (triage, triage_prompts), (apology, apology_prompts) = _prompts(arguments, workdir)
    started = time.monotonic()
    # The blueprint's handler had no prefix cache; the floor runs the model as the pipeline's handler does. One
    # model for both steps where they name the same preset, as the jobs load it.
    models = {
        preset: KerasHubGenerator(preset, prefix_cache=not per_element)
        for preset in dict.fromkeys((arguments.model, arguments.apology_model))
    }
    load_s = time.monotonic() - started
    tasks = (
        (arguments.model, triage, triage_prompts, arguments.max_length, TRIAGE_REPLY_TOKENS),
        (arguments.apology_model, apology, apology_prompts, arguments.apology_max_length, APOLOGY_REPLY_TOKENS),
    )
    generated = calls = 0
    with CompileCounter() as compiles:
        started = time.monotonic()
        for preset, template, prompts, max_length, reply_tokens in tasks:
            model = models[preset]
            size = 1 if per_element else arguments.batch_size
            prompt_args = handler_prompt_args(template, lora.label_offsets(preset, template.name))
            choice = prompt_args["choice"]
            model.cache_heads(prompt_args["heads"])
            # Once per model, as the handler makes it.
            prior = choice.prior(model) if choice else None
            for first in range(0, len(prompts), size):
                batch = prompts[first : first + size]
                if choice:
                    picks = choice.pick(model, batch, prior, max_length=max_length)
                    batch = [choice.continuation(prompt, pick) for prompt, pick in zip(batch, picks)]
                replies = model.generate(
                    batch, max_length, "greedy", template.stop, reply_tokens=None if per_element else reply_tokens,
                )
                calls += 1
                # The reply and its stop token.
                generated += sum(model.count_tokens([reply.text for reply in replies])) + len(replies)
        wall = time.monotonic() - started
    usage = collections.Counter()  # both models' figures, added up name by name (update keeps the zeros)
    for loaded in models.values():
        usage.update(loaded.usage())
    return {
        "wall_s": round(wall, 1), "load_s": round(load_s, 1), "compile_s": round(compiles.seconds, 1),
        "compiles": compiles.count, "seconds": round(wall - compiles.seconds, 1), "generate_calls": calls,
        "prompts": len(triage_prompts) + len(apology_prompts), "generated_tokens": generated,
        "usage": _per_chat(usage, arguments.chats),
        "weight_bytes": models[arguments.model].weight_bytes(),
        # The chats' own tokens (each chat's text alone), beside the positions prefilled for them.
        "chat_tokens_per_chat": round(sum(models[arguments.model].count_tokens([
            json.loads(line)["chat_message"] for line in (workdir / "chats.jsonl").read_text("utf-8").splitlines()
        ])) / arguments.chats, 1),
    }


def phase_floor(arguments, workdir: Path) -> dict:
    return _run_bare(arguments, per_element=False)


def phase_blueprint(arguments, workdir: Path) -> dict:
    return _run_bare(arguments, per_element=True)


def phase_llamacpp(arguments, workdir: Path) -> dict:
    """The floor's prompts through llama-cpp-python on the GGUF file the local model was converted from: greedy,
    llama.cpp's reuse of the previous prompt's evaluated prefix on, labels from its log-probabilities (with the
    handler's prior and offsets), then the continuation. The base weights: a LoRA preset's adapter is not applied,
    so a tuned default's labels and texts differ; the work per chat is the same."""
    try:
        import llama_cpp
    except ImportError:
        return {"status": "not installed: make bench-deps"}
    import numpy as np

    from handlers import gguf_preset, lora
    from pipeline.models import APOLOGY_REPLY_TOKENS, TRIAGE_REPLY_TOKENS, handler_prompt_args

    (triage, triage_prompts), (apology, apology_prompts) = _prompts(arguments, workdir)
    started = time.monotonic()
    gguf = gguf_preset.assemble_gguf(workdir / "model.gguf")
    model = llama_cpp.Llama(model_path=str(gguf), n_ctx=arguments.apology_max_length, n_threads=2, verbose=False)
    load_s = time.monotonic() - started
    evaluated = generated = 0

    def tokens_past_prefix(prompt: str) -> tuple[list[int], int]:
        """The prompt's tokens and how many of them llama.cpp reuses from its last evaluation (all but one, at most:
        the last is evaluated again for its logits, as llama-cpp-python does)."""
        nonlocal evaluated
        tokens = model.tokenize(prompt.encode(), add_bos=True, special=True)
        shared = next((at for at, (a, b) in enumerate(zip(model.input_ids, tokens)) if a != b), model.n_tokens)
        shared = min(shared, len(tokens) - 1)
        evaluated += len(tokens) - shared
        return tokens, shared

    def next_logprobs(prompt: str) -> np.ndarray:
        tokens, shared = tokens_past_prefix(prompt)
        model.n_tokens = shared
        model.eval(tokens[shared:])
        logits = np.asarray(model.scores[model.n_tokens - 1], dtype="float64")
        return logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())

    started = time.monotonic()
    for template, prompts, reply_tokens in (
        (triage, triage_prompts, TRIAGE_REPLY_TOKENS), (apology, apology_prompts, APOLOGY_REPLY_TOKENS)
    ):
        choice = handler_prompt_args(template, lora.label_offsets(arguments.model, template.name))["choice"]
        ids = [model.tokenize(option.encode(), add_bos=False)[0] for option in choice.options] if choice else []
        prior = np.mean([next_logprobs(p)[ids] for p in choice.baseline_prompts], axis=0) if choice and \
            choice.baseline_prompts else np.zeros(len(ids))
        prior = prior - np.asarray(choice.offsets or np.zeros(len(ids))) if choice else prior
        for prompt in prompts:
            if choice:
                pick = choice.options[int(np.argmax(next_logprobs(prompt)[ids] - prior))]
                prompt = choice.continuation(prompt, pick)
            tokens_past_prefix(prompt)
            reply = model.create_completion(
                prompt, max_tokens=reply_tokens, temperature=0.0, stop=list(template.stop) or None
            )
            generated += reply["usage"]["completion_tokens"]
    seconds = time.monotonic() - started
    return {
        "load_s": round(load_s, 1), "seconds": round(seconds, 1), "generated_tokens": generated,
        "prompts": len(triage_prompts) + len(apology_prompts),
        "usage": {"evaluated_tokens_per_chat": round(evaluated / arguments.chats, 1)},
    }


def phase_recompiles(arguments, workdir: Path) -> dict:
    """The project's handler, warmed up at load (`--warm_up`), fed a stream of varied batch sizes and chat lengths:
    XLA compilations after the warm-up.

    The stream sends the chats as they are and made longer (across length buckets), in batch sizes from 1 to B in
    an order of their own, as a streaming job's batches come.
    """
    from benchmarks.compiles import CompileCounter
    from pipeline.models import triage_model
    from pipeline.options import TriageOptions

    largest = QUICK["recompile_batch_size"] if arguments.quick else arguments.batch_size
    options = TriageOptions([
        "--model", arguments.model, "--sentiment_mode", arguments.sentiment_mode,
        "--max_length", str(arguments.max_length), "--max_batch_size", str(largest),
        "--share_model_across_processes", "false", "--warm_up", "true",
    ])
    handler, prompt = triage_model(options)
    chats = [json.loads(line) for line in (workdir / "chats.jsonl").read_text("utf-8").splitlines()]
    render = lambda chat, extra: prompt.render(chat=chat["chat_message"] + extra, user_id=chat["user_id"])  # noqa: E731
    # Quick: B-1, 1, then B.
    stream_sizes = [max(largest - 1, 1), 1, largest] if arguments.quick else [
        *range(largest, 0, -2), *range(1, largest + 1, 2)
    ]
    extras = ("", " Thanks.", _LONGER, " Also, my order number is 5521 and I am still waiting.")
    cycle = itertools.cycle(chats[::-1])
    stream = [
        [render(next(cycle), extras[(index + row) % len(extras)]) for row in range(size)]
        for index, size in enumerate(stream_sizes)
    ]
    lengths = set()
    with CompileCounter() as compiles:
        started = time.monotonic()
        model = handler.load_model()
        warm_count, warm_seconds = compiles.snapshot()
        warm_wall = time.monotonic() - started
        for batch in stream:
            lengths |= {r.inference.sequence_length for r in handler.run_inference(batch, model)}
        count, _ = compiles.snapshot()
    return {
        "warmup_compiles": warm_count, "warmup_s": round(warm_wall, 1), "warmup_compile_s": round(warm_seconds, 1),
        "stream_batches": stream_sizes, "sequence_lengths": sorted(lengths),
        "compiles_after_warmup": count - warm_count,
        "compiled_after_warmup": dict(compiles.by_function) if count > warm_count else {},
    }


def _utc(value) -> datetime:
    """A `processed_at` as BigQuery (datetime) or a review message (ISO 8601 text) gives it, as an aware UTC
    datetime."""
    stamp = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def percentile(values: list[float], fraction: float) -> float | None:
    """The `fraction` quantile of `values`, interpolated linearly between the two nearest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def latency_summary(published_at: datetime, processed_at: dict[str, object]) -> dict:
    """Seconds from publishing to processing, per chat: p50, p95 and max, and the span of the outputs.

    `processed_at` maps each chat id to the `processed_at` of its BigQuery row or review message (a datetime or ISO
    8601 text). Every chat was published in one call that started at `published_at`, so each latency is measured
    from that moment: an upper bound, by at most the length of the call (reported as `publish_call_s`).
    """
    published = _utc(published_at)
    stamps = sorted(_utc(value) for value in processed_at.values())
    latencies = [(stamp - published).total_seconds() for stamp in stamps]
    rounded = lambda value: None if value is None else round(value, 2)  # noqa: E731
    return {
        "chats": len(latencies),
        "p50_s": rounded(percentile(latencies, 0.50)), "p95_s": rounded(percentile(latencies, 0.95)),
        "max_s": rounded(max(latencies, default=None)),
        # From publishing to the last output; from the first output to the last.
        "publish_to_last_s": rounded(latencies[-1] if latencies else None),
        "first_to_last_s": rounded((stamps[-1] - stamps[0]).total_seconds() if stamps else None),
    }


def _warm_up_metrics(result) -> dict:
    """Shapes and seconds of the handlers' warm-up at model load (`--warm_up`), from the job's Beam metrics."""
    from apache_beam.metrics.metric import MetricsFilter

    found = {
        name: result.metrics().query(MetricsFilter().with_name(name))
        for name in ("warm_up_shapes", "warm_up_milli_secs")
    }
    return {
        "shapes": sum(counter.committed for counter in found["warm_up_shapes"]["counters"]),
        "seconds": round(sum(d.committed.sum for d in found["warm_up_milli_secs"]["distributions"]) / 1000, 1),
    }


def measure_streaming(arguments, workdir: Path) -> dict:
    """The streaming job on the local stack (Pub/Sub and BigQuery emulators): chats/s, latency per chat, compilations.

    `local.stack.LocalStack` starts both emulators and creates the resources; `local.job.StreamingJob` runs
    `pipeline.run` in this process on BundleBasedDirectRunner --streaming, with the batch phase's model, sentiment
    mode, lengths and batch size; `local.job.Tally` waits until every published chat is a row, a review message or a
    dead letter. First a warm-up: B chats (ids `warmup-…`), published and awaited, which loads the model and compiles
    the first shapes. Then the N chats of the other phases, published in one call: latency per chat is its output's
    `processed_at` (the BigQuery row's, or the review message's for a negative chat; stamped when the step produced
    it, before the write) less the start of that call; `seconds` (what chats/s divides N by) runs from that start to
    the last `processed_at`, so it holds no model load. Compilations are counted (in this process, where the runner's
    threads run the model) from the end of the warm-up to the end of the run.
    """
    from benchmarks.compiles import CompileCounter
    from local.job import StreamingJob, Tally
    from local.stack import LocalStack

    chats = [line.encode() for line in (workdir / "chats.jsonl").read_text("utf-8").splitlines() if line.strip()]
    warmup = [
        json.dumps({**json.loads(line), "id": f"warmup-{index}"}).encode()
        for index, line in enumerate(chats[: arguments.batch_size])
    ]
    flags = [
        "--share_model_across_processes=false", f"--sentiment_mode={arguments.sentiment_mode}",
        f"--max_length={arguments.max_length}", f"--apology_max_length={arguments.apology_max_length}",
        f"--max_batch_size={arguments.batch_size}", f"--apology_model={arguments.apology_model}",
    ]
    timeout = 600 + 30 * len(chats)
    (workdir / "stack").mkdir(exist_ok=True)
    with CompileCounter() as compiles, LocalStack.start(workdir=workdir / "stack") as stack:
        stack.create_resources()
        started = time.monotonic()
        job = StreamingJob(stack, arguments.model, *flags)
        try:
            stack.publish(warmup)
            warm = Tally(stack, warmup)
            if not warm.wait(job, timeout):
                return {"status": f"warm-up incomplete after {timeout} s: {warm.summary()}"}
            warmup_s = time.monotonic() - started
            warm_count, warm_seconds = compiles.snapshot()
            warm_functions = collections.Counter(compiles.by_function)
            published_at = datetime.now(UTC)
            before = time.monotonic()
            stack.publish(chats)
            publish_call_s = time.monotonic() - before
            tally = Tally(stack, chats)
            complete = tally.wait(job, timeout)
            count, seconds = compiles.snapshot()
            after = collections.Counter(compiles.by_function) - warm_functions
            handler_warm_up = _warm_up_metrics(job.result)
        finally:
            cancel_s = job.cancel()
        processed = {str(row["chat_id"]): row["processed_at"] for row in tally.rows if row["chat_id"] in tally.expected}
        processed |= {str(r["chat_id"]): r["processed_at"] for r in tally.reviews if r["chat_id"] in tally.expected}
        latency = latency_summary(published_at, processed)
    return {
        "status": "complete" if complete else f"incomplete after {timeout} s: {tally.summary()}",
        "warmup_chats": len(warmup), "warmup_s": round(warmup_s, 1), "handler_warm_up": handler_warm_up,
        "warmup_compiles": warm_count, "warmup_compile_s": round(warm_seconds, 1),
        "compiles_after_warmup": count - warm_count, "compile_s_after_warmup": round(seconds - warm_seconds, 1),
        "compiled_after_warmup": dict(after),
        "publish_call_s": round(publish_call_s, 2), "seconds": latency["publish_to_last_s"],
        "latency": latency, "outputs": {
            "rows": sum(1 for row in tally.rows if row["chat_id"] in tally.expected),
            "reviews": sum(1 for r in tally.reviews if r["chat_id"] in tally.expected),
            "dead_letters": len(tally.dead_letters),
        },
        "cancel_s": round(cancel_s, 1),
        # This process only (VmHWM): the emulators are its children and would count once reaped.
        "peak_rss_mb": round(
            next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024, 1
        ),
    }


_PHASES = {
    "pipeline": phase_pipeline, "uncached": phase_uncached, "floor": phase_floor, "blueprint": phase_blueprint,
    "recompiles": phase_recompiles, "llamacpp": phase_llamacpp,
    "streaming": measure_streaming,
}


# --- Driver ------------------------------------------------------------------------------------------------------


def _child(arguments, phase: str) -> dict:
    """Runs one phase in a fresh Python process and returns its JSON result."""
    command = [
        sys.executable, "-m", "benchmarks.throughput", "--phase", phase, "--workdir", arguments.workdir,
        "--model", arguments.model, "--apology_model", arguments.apology_model, "--chats", str(arguments.chats),
        "--batch_size", str(arguments.batch_size),
        "--max_length", str(arguments.max_length), "--apology_max_length", str(arguments.apology_max_length),
        "--sentiment_mode", arguments.sentiment_mode, *(["--quick"] if arguments.quick else []),
    ]
    print(f"[{time.strftime('%H:%M:%S')}] {phase} (load {_load_avg()}) ...", file=sys.stderr, flush=True)
    started, cpu_before = time.monotonic(), _children_cpu_s()
    completed = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True, check=False)
    if completed.returncode != 0:
        return {"status": f"failed with exit code {completed.returncode}"}
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    # The phase's process as a whole (start-up and imports too). Its CPU seconds bound what it would take on idle
    # cores: at least cpu_s / cores, at most cpu_s (when it runs on one core at a time).
    result["process_s"] = round(time.monotonic() - started, 1)
    result["process_cpu_s"] = round(_children_cpu_s() - cpu_before, 1)
    print(f"[{time.strftime('%H:%M:%S')}] {phase}: {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 3) if numerator and denominator else None


def _add_bandwidth_bound(arguments, name: str, result: dict, weight_bytes: int | None) -> None:
    """On a GPU, the phase's rates against its memory-bandwidth bound (the floor's weights, its batch's rows)."""
    if result.get("device", {}).get("platform") == "gpu" and weight_bytes and result.get("tokens_per_s"):
        rows = 1 if name in ("blueprint", "llamacpp") else arguments.batch_size
        result["bandwidth_bound"] = bandwidth.bound(
            result["device"], weight_bytes, rows, result["tokens_per_s"], result["chats_per_s"]
        )


def summarise(arguments, results: dict) -> dict:
    """Chats/s and tokens/s of each approach, the ratios the issue targets, and the run's settings."""
    # The three run the same prompts (greedy decoding), so the replies the floor counted are the pipeline's too.
    tokens = results.get("floor", {}).get("generated_tokens")
    for name in ("pipeline", "uncached", "floor", "blueprint", "llamacpp", "streaming"):
        result = results.get(name)
        if result and result.get("seconds"):
            result["chats_per_s"] = round(arguments.chats / result["seconds"], 3)
            generated = result.get("generated_tokens") or tokens
            result["tokens_per_s"] = round(generated / result["seconds"], 2) if generated else None
            _add_bandwidth_bound(arguments, name, result, results.get("floor", {}).get("weight_bytes"))
    # Throughput ratios on the same chats: the inverse ratio of the seconds each took.
    pipeline, uncached, floor, blueprint, llamacpp, streaming = (
        1 / results[name]["seconds"] if results.get(name, {}).get("seconds") else None
        for name in ("pipeline", "uncached", "floor", "blueprint", "llamacpp", "streaming")
    )
    return {
        "settings": {
            "model": arguments.model, "apology_model": arguments.apology_model, "chats": arguments.chats,
            "batch_size": arguments.batch_size,
            "max_length": arguments.max_length, "apology_max_length": arguments.apology_max_length,
            "sentiment_mode": arguments.sentiment_mode, "quick": arguments.quick,
        },
        "load_average": results.pop("load_average"),
        **results,
        "pipeline_over_floor": _ratio(pipeline, floor),
        "pipeline_over_uncached": _ratio(pipeline, uncached),
        "pipeline_over_llamacpp": _ratio(pipeline, llamacpp),
        "pipeline_over_blueprint": _ratio(pipeline, blueprint),
        "streaming_over_floor": _ratio(streaming, floor),
        "compiles_after_warmup": results.get("recompiles", {}).get("compiles_after_warmup"),
        "streaming_compiles_after_warmup": results.get("streaming", {}).get("compiles_after_warmup"),
    }


def main(argv: list[str] | None = None) -> dict:
    arguments = _arguments(argv)
    logging.getLogger().setLevel(logging.WARNING)
    arguments.model, arguments.apology_model = _models(arguments)
    if arguments.phase:
        result = _PHASES[arguments.phase](arguments, Path(arguments.workdir))
        result.setdefault("peak_rss_mb", _peak_rss_mb())
        result.setdefault("device", bandwidth.device())
        print(json.dumps(result))
        return result
    scratch = None
    if arguments.workdir is None:
        scratch = tempfile.TemporaryDirectory(prefix="chat-triage-bench-")
        arguments.workdir = scratch.name
    workdir = Path(arguments.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    write_chats(arguments.input, arguments.chats, workdir / "chats.jsonl")
    started = time.monotonic()
    results = {"load_average": {"start": _load_avg()}}
    phases = [phase for phase in arguments.phases.split(",") if phase]
    if arguments.streaming and "streaming" not in phases:
        phases.append("streaming")
    for phase in phases:  # the pipeline first: the floor and the blueprint replay its apology prompts
        results[phase] = _child(arguments, phase)
    results.setdefault("streaming", {"status": "not run"})
    results["load_average"]["end"] = _load_avg()
    summary = summarise(arguments, results)
    summary["total_s"] = round(time.monotonic() - started, 1)
    if scratch:
        scratch.cleanup()
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
