"""A tiny Gemma preset, randomly initialised and then taught a handful of replies, for fast real-model tests.

It goes through the same `save_to_preset` → `CausalLM.from_preset` → `generate()` path as a real Gemma; only the
weights are small (2 layers, hidden size 64, a SentencePiece vocabulary trained in memory on the lessons).
It learns the instruction-tuned prompts of both sentiment modes and the apology prompt.
"""

from __future__ import annotations

import io
from pathlib import Path

import keras
import numpy as np
import sentencepiece

from handlers import native_logs
from pipeline.prompts import Family, SentimentMode, load_prompt, prompt_name

keras_hub = native_logs.keras_hub()

SEQUENCE_LENGTH = 384
END_OF_TURN = "<end_of_turn>"
GENERATE_PROMPT = prompt_name("triage", Family.INSTRUCT, SentimentMode.GENERATE)
SCORE_PROMPT = prompt_name("triage", Family.INSTRUCT, SentimentMode.SCORE)
APOLOGY_PROMPT = prompt_name("apology", Family.INSTRUCT)

# (chat id, user id, chat, the reply the model is taught). Each reply is what the pipeline must make of it.
TRIAGE_LESSONS = [
    ("1", "221", "The pizza was cold and two hours late.",
     '{"sentiment": -1, "summary": "Cold pizza, two hours late."}'),
    ("2", "222", "Thanks, the burger was great!", '{"sentiment": 1, "summary": "The customer loved the burger."}'),
    ("3", "223", "What time do you open on Sunday?", '{"sentiment": 0, "summary": "Asked about Sunday hours."}'),
    # A malformed reply of the kind small models produce: the sentiment as a word.
    ("4", "224", "My order number is 4471.", 'Sure! {"sentiment": "neutral", "summary": "Order number given."}'),
]
# (chat id, the label the scoring prompt is taught to continue with, the summary after it).
SCORED_LESSONS = [
    ("1", " negative", " Cold pizza, two hours late."),
    ("2", " positive", " The customer loved the burger."),
    ("3", " neutral", " Asked about Sunday hours."),
    # An empty summary: the one way a scored reply can still be invalid.
    ("4", " neutral", ""),
]
APOLOGY_LESSON = ("1", "221", "Cold pizza, two hours late.", "We are sorry your pizza was cold and late.")


def lesson_chats() -> list[dict]:
    """The taught chats as input messages."""
    return [{"id": chat_id, "user_id": user_id, "chat_message": chat} for chat_id, user_id, chat, _ in TRIAGE_LESSONS]


def _chat(chat_id: str) -> str:
    return next(chat for cid, _, chat, _ in TRIAGE_LESSONS if cid == chat_id)


def _lessons() -> list[str]:
    generate, score, apology = map(load_prompt, (GENERATE_PROMPT, SCORE_PROMPT, APOLOGY_PROMPT))
    texts = [
        generate.render(chat=chat, user_id=user_id) + reply + END_OF_TURN for _, user_id, chat, reply in TRIAGE_LESSONS
    ]
    texts += [
        score.render(chat=_chat(chat_id)) + label + score.scoring.then + summary + "\n"
        for chat_id, label, summary in SCORED_LESSONS
    ]
    chat_id, user_id, summary, draft = APOLOGY_LESSON
    texts.append(apology.render(chat=_chat(chat_id), user_id=user_id, summary=summary) + draft + END_OF_TURN)
    return texts


def _tokenizer(corpus: list[str]) -> keras_hub.models.GemmaTokenizer:
    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=proto, vocab_size=600, hard_vocab_limit=False,
        model_type="unigram", byte_fallback=True, character_coverage=1.0, minloglevel=2,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
        # As in Gemma's vocabulary: newlines survive; "\n", "\n\n" and each scored label are one token.
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=False,
        user_defined_symbols=[
            "<start_of_turn>", END_OF_TURN, "\n", "\n\n",
            *sorted({"▁" + label.strip() for _, label, _ in SCORED_LESSONS}),
        ],
    )
    return keras_hub.models.GemmaTokenizer(proto=proto.getvalue())


def build_taught_preset(directory: Path, epochs: int = 100) -> Path:
    """Builds, teaches and saves the tiny preset into `directory`; about 30 s on two CPU cores."""
    texts = _lessons()
    tokenizer = _tokenizer(texts)
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_query_heads=2, num_key_value_heads=1,
        hidden_dim=64, intermediate_dim=128, head_dim=32,
    )
    preprocessor = keras_hub.models.GemmaCausalLMPreprocessor(tokenizer=tokenizer, sequence_length=SEQUENCE_LENGTH)
    model = keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=preprocessor)
    # Tokenise eagerly: KerasHub's tf.data preprocessing loses the SentencePiece resource inside fit().
    x, y, weights = preprocessor(texts)
    model.preprocessor = None
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[],
    )
    model.fit(
        x={key: np.asarray(value) for key, value in x.items()}, y=np.asarray(y), sample_weight=np.asarray(weights),
        batch_size=2, epochs=epochs, verbose=0,
    )
    model.preprocessor = preprocessor
    model.save_to_preset(str(directory))
    return directory
