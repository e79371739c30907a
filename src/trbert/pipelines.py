"""An extractive question-answering pipeline for `pipeline("question-answering")`, and the input checks
of `trbert.encode` in `pipeline("text-classification")` for trbert models.

transformers 5 dropped its own question-answering pipeline; trbert registers this one under the
same task name so that span-extraction models (trbert's and plain BERT-family ones) keep working
with `transformers.pipeline`. Long contexts are split into overlapping windows; the answer is the
best-scoring span over all windows, mapped back to characters of the context.
"""

import math

import torch
import transformers.pipelines as hf_pipelines
from transformers import AutoModelForQuestionAnswering, Pipeline

from .inputs import check_texts
from .tasks.question_answering import window_spans


class QuestionAnsweringPipeline(Pipeline):
    """Call as `qa(question=..., context=...)` or with a dict / list of dicts holding both keys.

    Options: `top_k` (answers per question, default 1), `max_answer_len` (tokens, default 30),
    `max_seq_len` (window length, default the tokenizer's limit, at most 384), `doc_stride`
    (overlap of consecutive windows, default 128).
    """

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False

    def __call__(self, inputs=None, question=None, context=None, **kwargs):
        if inputs is None:
            inputs = {"question": question, "context": context}
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, top_k=None, max_answer_len=None, max_seq_len=None, doc_stride=None, **kwargs):
        pre, post = {}, {}
        if max_seq_len is not None:
            pre["max_seq_len"] = max_seq_len
        if doc_stride is not None:
            pre["doc_stride"] = doc_stride
        if top_k is not None:
            post["top_k"] = top_k
        if max_answer_len is not None:
            post["max_answer_len"] = max_answer_len
        return pre, {}, post

    def preprocess(self, example, max_seq_len=None, doc_stride=128):
        if not isinstance(example, dict) or "question" not in example or "context" not in example:
            raise TypeError("question answering takes question=... and context=... (or dicts with both keys)")
        question, context = example["question"], example["context"]
        for name, text in (("question", question), ("context", context)):
            if not isinstance(text, str):
                raise TypeError(f"the {name} must be a string, got {type(text).__name__}")
            check_texts(text, f"the {name}")  # not empty, not only whitespace or invisible characters
        if not self.tokenizer.is_fast:
            raise ValueError("question answering needs a fast tokenizer (it maps tokens back to characters)")
        max_seq_len = max_seq_len or min(self.tokenizer.model_max_length, 384)
        enc = self.tokenizer(
            question, context, truncation="only_second", max_length=max_seq_len,
            stride=min(doc_stride, max_seq_len // 2), return_overflowing_tokens=True,
            return_offsets_mapping=True, padding=True, return_tensors="pt",
        )
        in_context = torch.tensor(
            [[sid == 1 for sid in enc.sequence_ids(w)] for w in range(len(enc["input_ids"]))]
        )
        model_inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
        return {**model_inputs, "offsets": enc["offset_mapping"], "in_context": in_context, "context": context}

    def _forward(self, inputs):
        extra = {k: inputs.pop(k) for k in ("offsets", "in_context", "context")}
        out = self.model(**inputs)
        return {"start_logits": out.start_logits, "end_logits": out.end_logits, **extra}

    def postprocess(self, outputs, top_k=1, max_answer_len=30):
        context, offsets, in_context = outputs["context"], outputs["offsets"], outputs["in_context"]
        candidates = []
        for w in range(in_context.shape[0]):
            allowed = in_context[w]
            # Probabilities over the window's context tokens: log p(start) + log p(end) ranks the spans.
            log_p = [x[w].float().masked_fill(~allowed, float("-inf")).log_softmax(-1)
                     for x in (outputs["start_logits"], outputs["end_logits"])]
            for score, s, e in window_spans(*log_p, allowed, max_answer_len, k=top_k):
                start, end = int(offsets[w, s, 0]), int(offsets[w, e, 1])
                candidates.append({"score": math.exp(score), "start": start, "end": end, "answer": context[start:end]})
        candidates.sort(key=lambda c: -c["score"])
        answers = candidates[:top_k]
        return answers[0] if top_k == 1 and answers else answers


class TextClassificationPipeline(hf_pipelines.TextClassificationPipeline):
    """transformers' text-classification pipeline; for a trbert model the texts are checked first, as
    `trbert.encode` checks them: an empty list gives an empty list, and a text that is not a string or
    holds nothing to read gets an error naming its position (transformers' own pipeline crashes on an
    empty list, and a pipeline feeds the model one text at a time, so the model cannot say which).
    Other models are left to transformers as they are; pairs (dicts) too."""

    def __call__(self, inputs=None, **kwargs):
        if getattr(self.model.config, "model_type", None) == "trbert" and not isinstance(inputs, dict):
            if isinstance(inputs, list | tuple) and not inputs:
                return []
            if not (isinstance(inputs, list | tuple) and any(isinstance(item, dict) for item in inputs)):
                check_texts(inputs, "inputs")
        return super().__call__(inputs, **kwargs)


def register() -> None:
    """Make `pipeline("question-answering")` build this pipeline (transformers 5 lists the task as removed),
    and `pipeline("text-classification")` the one above."""
    hf_pipelines.PIPELINE_REGISTRY.register_pipeline(
        "text-classification", pipeline_class=TextClassificationPipeline,
        pt_model=hf_pipelines.SUPPORTED_TASKS["text-classification"]["pt"], type="text",
        default=hf_pipelines.SUPPORTED_TASKS["text-classification"].get("default"),
    )
    hf_pipelines.REMOVED_TASKS.pop("question-answering", None)
    hf_pipelines.PIPELINE_REGISTRY.register_pipeline(
        "question-answering", pipeline_class=QuestionAnsweringPipeline, pt_model=AutoModelForQuestionAnswering,
        type="text",
    )


register()
