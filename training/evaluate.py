"""Evaluation entry point: how well the triage model's sentiment matches labeled data, and its text the references.

    python -m training.evaluate --labeled ../shared/data/tweeteval_sentiment_val.jsonl --limit 300 [--model PRESET]
    python -m training.evaluate --labeled samples/chats.jsonl --label_file samples/labels.jsonl
    python -m training.evaluate --labeled ROWS --model TUNED --compare BASE --sentiment_only
    python -m training.evaluate --labeled data/support_chats/held_out.jsonl --compare BASE
    python -m training.evaluate --labeled ROWS --sentiment_only --reliability out/reliability

Each labeled row becomes a chat message and goes through the batch job's own transforms (parse, prompt, model,
reply parser); with `--sentiment_only` the model only picks the label (score mode), without the summary. Rows that
carry a reference summary or reply go through the whole triage graph, apology drafts included, and the report
measures the summaries and drafts against the references (`training.text_metrics`). Every `--compare` preset is
evaluated on the same rows after `--model`, each with its own family's prompt; tables compare them, and the reports
are printed as JSON on the last line. With `--reliability PREFIX`, each model's confidence is measured against the
labels (`training.reliability`): a table, its JSON and a plot per model, `PREFIX-<model id>.md/.json/.png`.
"""

from __future__ import annotations

import functools
import glob
import json
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.contracts import (
    DeadLetter,
    LabeledExample,
    NegativeChat,
    ReviewMessage,
    SentimentComparison,
    SentimentReport,
    Stage,
    TextReport,
    TriageRow,
)
from pipeline.graph import TriageChats
from pipeline.inputs import ParseChats
from pipeline.launch import Job, main
from pipeline.models import TRIAGE_NAMESPACE, apology_steps, triage_model, use_default_model
from pipeline.options import TriageOptions
from pipeline.prompts import PromptTemplate, SentimentMode
from pipeline.tags import ERROR, MAIN, NEGATIVE
from pipeline.triage import CreatePrompts, Triage, triage_fields
from training import reliability, text_metrics
from training.options import EvaluateOptions
from training.paired import paired_difference

CLASSES = {-1: "negative", 0: "neutral", 1: "positive"}
# A chat that failed at these stages was triaged negative: its sentiment counts, only its draft is missing.
APOLOGY_STAGES = {Stage.APOLOGY_INFERENCE, Stage.APOLOGY_REPLY}


def _sentiment_only_needs_score_mode(options: PipelineOptions) -> None:
    if (
        options.view_as(EvaluateOptions).sentiment_only
        and options.view_as(TriageOptions).sentiment_mode != SentimentMode.SCORE
    ):
        raise ValueError("--sentiment_only needs --sentiment_mode score: only a scored label comes without a reply")


JOB = Job(
    prog="python -m training.evaluate",
    description="How well the triage model's sentiment matches labeled rows, through the batch job's transforms.",
    options=(EvaluateOptions, TriageOptions),
    required=("labeled",),
    check=_sentiment_only_needs_score_mode,
)


def load_labeled(pattern: str, labels_path: str | None = None, limit: int | None = None) -> list[tuple[dict, int]]:
    """`(chat message, label)` pairs in file order.

    Lines are `{"id", "text", "label"}` examples; with `labels_path`, they are chat messages and the labels
    come from that file's `{"id", "label"}` lines (chats without a label, malformed lines among them, are skipped).
    """
    if labels_path is None:
        return [(example.as_chat(), example.label) for example in read_examples(pattern)][:limit]
    labels = {str(row["id"]): row["label"] for row in map(json.loads, Path(labels_path).read_text().splitlines())}
    chats = [chat for chat in map(_json_object, _lines(pattern)) if chat and str(chat.get("id")) in labels]
    _require_unique(str(chat["id"]) for chat in chats)
    return [(chat, labels[str(chat["id"])]) for chat in chats][:limit]


def read_examples(pattern: str) -> list[LabeledExample]:
    """The labeled rows of the files `pattern` matches, in file order, with their reference texts where they have
    any; ids must be unique."""
    examples = [LabeledExample.model_validate_json(line) for line in _lines(pattern)]
    _require_unique(str(example.id) for example in examples)
    return examples


def _require_unique(ids) -> None:
    repeated = sorted(chat_id for chat_id, count in Counter(ids).items() if count > 1)
    if repeated:
        raise ValueError(f"labeled ids must be unique; repeated: {repeated[:5]}")


def load_references(pattern: str, ids: set[str]) -> list[LabeledExample]:
    """The examples among `ids` that carry a reference summary or reply, in file order."""
    return [example for example in read_examples(pattern) if str(example.id) in ids and example.has_references]


def _lines(pattern: str) -> list[str]:
    """The non-blank lines of the files that match `pattern`, files in name order."""
    paths = sorted(glob.glob(pattern))
    return [line for path in paths for line in Path(path).read_text("utf-8").splitlines() if line.strip()]


def _json_object(line: str) -> dict | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class PickSentiment(beam.PTransform):
    """Chats in; `(chat id, sentiment, confidence)` out, the label a score-mode handler built with `choose_only`
    picks (reading a chat that imitates the answer apart too, as `Triage` does with `read_apart`).

    No summary is generated, so there is no reply to validate; a batch whose inference fails gives `None`.
    """

    def __init__(self, handler, template: PromptTemplate, read_apart: bool = True):
        super().__init__()
        self._handler = handler
        self._template = template
        self._fields = functools.partial(triage_fields, apart=read_apart)

    def expand(self, chats):
        labels = self._template.scoring.labels
        results, failures = (
            chats
            | "CreatePrompts" >> CreatePrompts(self._template, self._fields)
            | "RunInference" >> RunInference(KeyedModelHandler(self._handler)).with_exception_handling()
        )
        picked = results | "Label" >> beam.MapTuple(
            lambda chat, result: (chat.chat_id, labels[result.inference.choice], result.inference.confidence)
        )
        failed = failures.failed_inferences | "FailedBatches" >> beam.FlatMap(_no_sentiments)
        return (picked, failed) | "Sentiments" >> beam.Flatten()


def _no_sentiments(failure: tuple[list, tuple]):
    """`(chat id, None, None)` for each chat of a batch whose inference raised; the error is logged, the rows count
    as errors in the report."""
    batch, (_, error, _) = failure
    logging.warning("inference failed for a batch of %d chats: %s", len(batch), error)
    return [(chat.chat_id, None, None) for chat, _prompt in batch]


def build_pipeline(
    pipeline: beam.Pipeline, chats: list[dict], triage: Triage | PickSentiment | TriageChats, output_prefix: str
) -> None:
    """Writes one `{"id", "sentiment", "confidence"}` line per chat, `sentiment` null where the chat ended in
    `error` (and `confidence` where there was no scoring pass); `Triage` adds each chat's `summary`, and the whole
    graph (`TriageChats`) also each negative chat's `draft`."""
    payloads = pipeline | "Chats" >> beam.Create([json.dumps(chat, ensure_ascii=False).encode() for chat in chats])
    if isinstance(triage, TriageChats):
        outputs = payloads | "TriageChats" >> triage
        predicted, failed = {"Main": outputs[MAIN], "Drafted": outputs[NEGATIVE]}, [outputs[ERROR]]
    else:
        parsed = payloads | "ParseAndValidate" >> ParseChats()
        failed = [parsed[ERROR]]
        if isinstance(triage, PickSentiment):
            predicted = {"Picked": parsed.chats | "PickSentiment" >> triage}
        else:
            triaged = parsed.chats | "Triage" >> triage
            predicted = {"Main": triaged[MAIN], "Negative": triaged[NEGATIVE]}
            failed.append(triaged[ERROR])
    predictions = (
        *(records | f"{name}Predictions" >> beam.Map(_prediction) for name, records in predicted.items()),
        failed | "Errors" >> beam.Flatten() | "Failed" >> beam.Map(_failure),
    ) | "Predictions" >> beam.Flatten()
    _ = (
        predictions
        | "ToJson" >> beam.Map(lambda prediction: json.dumps(prediction, ensure_ascii=False))
        | "Write" >> beam.io.WriteToText(output_prefix, file_name_suffix=".jsonl")
    )


def _prediction(record: TriageRow | NegativeChat | ReviewMessage | tuple[str, int | None, float | None]) -> dict:
    """What the model made of a chat: a row, a negative chat, a review message or a picked
    `(id, sentiment, confidence)`."""
    if isinstance(record, TriageRow):
        return {"id": record.chat_id, "sentiment": record.sentiment, "confidence": record.confidence,
                "summary": record.summary}
    if isinstance(record, NegativeChat):
        return {"id": record.chat.chat_id, "sentiment": -1, "confidence": record.confidence,
                "summary": record.reply.summary}
    if isinstance(record, ReviewMessage):
        return {"id": record.chat_id, "sentiment": -1, "confidence": record.confidence, "summary": record.summary,
                "draft": record.draft_reply}
    chat_id, sentiment, confidence = record
    return {"id": chat_id, "sentiment": sentiment, "confidence": confidence}


def _failure(letter: DeadLetter) -> dict:
    return {"id": letter.chat_id, "sentiment": -1 if letter.stage in APOLOGY_STAGES else None, "confidence": None}


def score(labels: dict[str, int], predicted: dict[str, int | None]) -> dict:
    """Macro recall and F1 over the three classes, per-class recall, the valid share and the confusion table.

    A row missing from `predicted` or predicted `None` counts as an error: wrong for every class.
    """
    confusion = {name: Counter() for name in CLASSES.values()}
    for chat_id, label in labels.items():
        confusion[CLASSES[label]][CLASSES.get(predicted.get(chat_id), ERROR)] += 1
    recall, f1 = {}, {}
    for name in CLASSES.values():
        true_positive = confusion[name][name]
        support = sum(confusion[name].values())
        predicted_as = sum(row[name] for row in confusion.values())
        recall[name] = true_positive / support if support else 0.0
        precision = true_positive / predicted_as if predicted_as else 0.0
        f1[name] = 2 * precision * recall[name] / (precision + recall[name]) if precision + recall[name] else 0.0
    errors = sum(row[ERROR] for row in confusion.values())
    return {
        "rows": len(labels),
        "valid_share": round(1 - errors / len(labels), 4),
        "error_share": round(errors / len(labels), 4),
        "macro_recall": round(sum(recall.values()) / len(CLASSES), 4),
        "macro_f1": round(sum(f1.values()) / len(CLASSES), 4),
        "recall": {name: round(value, 4) for name, value in recall.items()},
        "confusion": {name: dict(row) for name, row in confusion.items()},
    }


def _inference_seconds(result) -> float:
    """Seconds the triage model spent in inference, from RunInference's own latency metric."""
    distributions = result.metrics().query(MetricsFilter().with_namespace(TRIAGE_NAMESPACE))["distributions"]
    return sum(
        d.committed.sum for d in distributions if d.key.metric.name.endswith("inference_batch_latency_micro_secs")
    ) / 1e6


def run(argv: list[str] | None = None) -> SentimentComparison:
    """Parses flags, triages the labeled rows with each model, prints and returns the reports."""
    options = JOB.parse(argv)
    evaluation, triage_options = options.view_as(EvaluateOptions), options.view_as(TriageOptions)
    use_default_model(triage_options)
    pairs = load_labeled(evaluation.labeled, evaluation.label_file, evaluation.limit)
    if not pairs:
        raise SystemExit(f"no labeled rows in {evaluation.labeled}")
    labels = {str(chat["id"]): label for chat, label in pairs}
    # Chat files with a labels file carry no references; neither does a run that writes no text.
    with_text = evaluation.label_file is None and not evaluation.sentiment_only
    references = load_references(evaluation.labeled, set(labels)) if with_text else []
    reports, predictions = [], []
    for preset in [triage_options.model, *(evaluation.compare or [])]:
        triage_options.model = preset
        report, predicted = _evaluate(options, pairs, labels, references)
        print(report.model_dump_json(), flush=True)
        reports.append(report)
        predictions.append((report.model_id, predicted))
    paired = [paired_difference(labels, CLASSES, predictions[0], other) for other in predictions[1:]]
    comparison = SentimentComparison(reports=reports, paired=paired)
    print(render(comparison))
    print(comparison.model_dump_json())
    return comparison


def _evaluate(
    options: PipelineOptions, pairs: list[tuple[dict, int]], labels: dict, references: list[LabeledExample]
) -> tuple[SentimentReport, dict[str, int | None]]:
    """One model's report and its label by row id: the rows through the job's transforms on a pipeline of their
    own."""
    triage_options, sentiment_only = options.view_as(TriageOptions), options.view_as(EvaluateOptions).sentiment_only
    triage = triage_model(triage_options, choose_only=sentiment_only)
    read_apart = triage_options.read_imitations_apart
    if sentiment_only:
        transform = PickSentiment(*triage, read_apart)
    elif references:
        apologies = apology_steps(triage_options)
        transform = TriageChats.from_models(
            triage, apologies, triage_options.inference_timeout_secs, read_apart=read_apart
        )
    else:
        transform = Triage(*triage, read_apart=read_apart)
    with tempfile.TemporaryDirectory() as scratch:
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, [chat for chat, _ in pairs], transform, os.path.join(scratch, "p"))
        started = time.monotonic()
        result = pipeline.run()
        result.wait_until_finish()
        wall_seconds = time.monotonic() - started
        rows = []
        for path in glob.glob(os.path.join(scratch, "p*")):
            with open(path) as lines:
                rows += [json.loads(line) for line in lines]
    handler, prompt = triage
    if prefix := options.view_as(EvaluateOptions).reliability:
        _write_reliability(handler.model_id, labels, rows, prefix)
    predicted = {row["id"]: row["sentiment"] for row in rows}
    report = SentimentReport(
        **score(labels, predicted),
        chats_per_second=round(len(pairs) / max(_inference_seconds(result), 1e-9), 3),
        wall_seconds=round(wall_seconds, 1),
        model_id=handler.model_id,
        prompt_version=prompt.version,
        sentiment_only=sentiment_only,
        text=text_report(references, {row["id"]: row for row in rows}, triage_options.summary_language)
        if references else None,
    )
    return report, predicted


def _write_reliability(model_id: str, labels: dict, rows: list[dict], prefix: str) -> None:
    """The confidence against the labels (`training.reliability`), on the rows that have one, printed and written."""
    scored = [(labels[row["id"]], row["sentiment"], row["confidence"]) for row in rows if row["confidence"] is not None]
    if not scored:
        raise SystemExit("--reliability needs a confidence: score mode (--sentiment_mode score) gives one")
    report = reliability.reliability(model_id, scored)
    paths = reliability.write(report, prefix)
    print(reliability.table(report), f"Written to {', '.join(map(str, paths))}.", sep="\n", flush=True)


def text_report(
    references: list[LabeledExample], predicted: dict[str, dict], summary_language: str = "auto"
) -> TextReport:
    """The summaries and drafts the model wrote (`predicted`, by chat id) against the references; summaries are
    judged in `summary_language` where one is set (`--summary_language`), else in the chat's."""
    language = None if summary_language == "auto" else summary_language
    summaries = [
        _written(example, example.summary, predicted, "summary", language) for example in references if example.summary
    ]
    replies = [_written(example, example.reply, predicted, "draft") for example in references if example.reply]
    return TextReport(
        summaries=text_metrics.score_texts(summaries),
        replies=text_metrics.score_texts(replies),
        worst_replies=text_metrics.worst(replies),
    )


def _written(
    example: LabeledExample, reference: str, predicted: dict[str, dict], field: str, language: str | None = None
) -> text_metrics.Written:
    chat_id = str(example.id)
    return text_metrics.Written(
        id=chat_id, chat=example.text, reference=reference, text=predicted.get(chat_id, {}).get(field),
        key_terms=example.key_terms, chat_language=language or example.language,
    )


def render(comparison: SentimentComparison) -> str:
    """What a person reads: the sentiment table and, where the rows carry references, the text table and each
    model's worst drafts."""
    parts = [comparison_table(comparison)]
    if comparison.paired:
        parts.append(paired_table(comparison))
    if any(report.text for report in comparison.reports):
        parts.append(text_table(comparison))
        parts.extend(worst_replies(report) for report in comparison.reports if report.text)
    return "\n\n".join(parts)


def comparison_table(comparison: SentimentComparison) -> str:
    """The reports side by side, one line per model, as a Markdown table."""
    return _markdown_table(
        ["model", "prompt", "rows", "macro recall", "macro F1", "recall neg / neu / pos", "valid", "chats/s"],
        (
            [
                report.model_id, report.prompt_version, report.rows, f"{report.macro_recall:.3f}",
                f"{report.macro_f1:.3f}", " / ".join(f"{report.recall[name]:.3f}" for name in CLASSES.values()),
                f"{report.valid_share:.0%}", report.chats_per_second,
            ]
            for report in comparison.reports
        ),
    )


def paired_table(comparison: SentimentComparison) -> str:
    """Each compared model against the first, row by row, as a Markdown table."""
    return _markdown_table(
        ["model", "against", "macro recall difference", "95% interval", "rows only it / only the first gets right",
         "McNemar p"],
        (
            [
                pair.model_id, pair.against, f"{pair.macro_recall_difference:+.4f}",
                f"{pair.low:+.4f} to {pair.high:+.4f}", f"{pair.only_this_right} / {pair.only_first_right}",
                f"{pair.mcnemar_p:.3g}",
            ]
            for pair in comparison.paired
        ),
    )


def text_table(comparison: SentimentComparison) -> str:
    """The text reports side by side, one line per model and kind of text, as a Markdown table."""
    return _markdown_table(
        ["model", "text", "written / references", "chrF", "names the problem", "in the chat's language",
         "most common 6 words: share", "mean length (words; ko: characters)"],
        (
            [
                report.model_id, kind, f"{scores.written} / {scores.references}", _figure(scores.chrf),
                _figure(scores.names_problem), _figure(scores.in_chat_language),
                f"{_figure(scores.boilerplate_share)} \"{scores.boilerplate_run or ''}\"",
                ", ".join(f"{language} {value}" for language, value in scores.mean_length.items()),
            ]
            for report in comparison.reports if report.text
            for kind, scores in (("summaries", report.text.summaries), ("replies", report.text.replies))
        ),
    )


def _markdown_table(header: list[str], rows: Iterable[list]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines)


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def worst_replies(report: SentimentReport) -> str:
    """A model's worst drafts by chrF, each with its chat and the reference, for a person to read."""
    lines = [f"Worst drafts of {report.model_id} (sentence chrF, lowest first):"]
    for reply in report.text.worst_replies:
        lines.append(f"\n[{reply.id}] chrF {reply.chrf}")
        for name, text in (("chat", reply.chat), ("reference", reply.reference), ("draft", reply.draft)):
            lines.append(f"  {name}:\n" + "\n".join(f"    {line}" for line in text.splitlines()))
    return "\n".join(lines)


if __name__ == "__main__":
    main(run, wait=False, level=logging.WARNING)
