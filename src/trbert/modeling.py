"""TR-BERT models: BERT-family encoders whose deeper layers see only the tokens a policy keeps."""

import os
from dataclasses import dataclass

import torch
from safetensors import SafetensorError
from torch import nn
from torch.nn import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)
from transformers import initialization as init
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.models.bert.modeling_bert import BertEmbeddings, BertPooler, BertPreTrainedModel
from transformers.models.mpnet.modeling_mpnet import MPNetEmbeddings
from transformers.models.roberta.modeling_roberta import RobertaClassificationHead, RobertaEmbeddings

from .configuration import BACKBONE_OF, OFFSET_POSITIONS, TRBertConfig
from .errors import CheckpointError
from .reduction import TRBertEncoder
from .strategies import KeepStrategy


@dataclass
class TRBertModelOutput(BaseModelOutputWithPooling):
    kept_lengths: torch.Tensor | None = None
    kept_fraction: torch.Tensor | None = None
    kept_steps: torch.Tensor | None = None  # [B, n] steps each token passed: len(steps) kept to the end, -1 padding
    keep_log_prob: torch.Tensor | None = None
    step_states: list[torch.Tensor] | None = None  # masked mode, when asked: [B, n, d] entering each step
    exit_predictions: torch.Tensor | None = None  # early exit: [B, n, C] the prediction where each token left
    exited: torch.Tensor | None = None  # early exit: [B, n] the tokens that left before the last layer


@dataclass
class TRBertSequenceClassifierOutput(SequenceClassifierOutput):
    kept_lengths: torch.Tensor | None = None
    kept_fraction: torch.Tensor | None = None
    kept_steps: torch.Tensor | None = None  # [B, n] steps each token passed: len(steps) kept to the end, -1 padding
    keep_log_prob: torch.Tensor | None = None


@dataclass
class TRBertQuestionAnsweringOutput(QuestionAnsweringModelOutput):
    kept_lengths: torch.Tensor | None = None
    kept_fraction: torch.Tensor | None = None
    kept_steps: torch.Tensor | None = None  # [B, n] steps each token passed: len(steps) kept to the end, -1 padding
    keep_log_prob: torch.Tensor | None = None


@dataclass
class TRBertTokenClassifierOutput(TokenClassifierOutput):
    kept_lengths: torch.Tensor | None = None
    kept_fraction: torch.Tensor | None = None
    kept_steps: torch.Tensor | None = None  # [B, n] steps each token passed: len(steps) kept to the end, -1 padding
    keep_log_prob: torch.Tensor | None = None
    exit_logits: list[torch.Tensor] | None = None  # early exit, when asked: [B, n, C] of each step's classifier


def _reduction_fields(outputs: TRBertModelOutput) -> dict:
    return {k: getattr(outputs, k) for k in ("kept_lengths", "kept_fraction", "kept_steps", "keep_log_prob")}


class TRBertPreTrainedModel(BertPreTrainedModel):
    config: TRBertConfig
    config_class = TRBertConfig
    base_model_prefix = "bert"
    _can_record_outputs = None
    _keys_to_ignore_on_load_unexpected = [r"pooler\.", r"cls\.", r"lm_head\."]

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, RobertaEmbeddings | MPNetEmbeddings):
            init.copy_(module.position_ids, torch.arange(module.position_ids.shape[-1]).expand((1, -1)))
        if isinstance(module, RobertaEmbeddings):
            init.zeros_(module.token_type_ids)
        if isinstance(module, nn.Linear) and getattr(module, "is_policy_output", False):
            # An untrained policy keeps every token (p = sigmoid(1) = 0.73 >= 0.5): the model starts as the full
            # model, and sampled actions still explore skipping.
            init.constant_(module.bias, 1.0)

    def set_strategy(self, strategy: KeepStrategy) -> None:
        """Choose what decides which tokens are kept (default: the learned policy, `PolicyStrategy`)."""
        self.base_model.encoder.strategy = strategy

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, config=None, **kwargs):
        """Load a trbert checkpoint, or any BERT- or RoBERTa-family checkpoint with its weights unchanged.

        Keyword arguments that name `TRBertConfig` fields (`reduction_layers`, `keep_threshold`,
        `num_labels`, ...) override the checkpoint's configuration. The policy networks of a
        checkpoint that has none are new.
        """
        path = os.fspath(pretrained_model_name_or_path)
        if not os.path.isdir(path):
            raise CheckpointError(
                f"no checkpoint folder at {path!r}: pass a folder written by save_pretrained "
                "(config.json and model.safetensors)"
            )
        key_mapping = kwargs.pop("key_mapping", None)
        if not isinstance(config, TRBertConfig):
            config, kwargs = _trbert_config(path, config, kwargs)
        if config.backbone in CHECKPOINT_NAMES:
            key_mapping = {**CHECKPOINT_NAMES[config.backbone], **(key_mapping or {})}
        try:
            return super().from_pretrained(path, *model_args, config=config, key_mapping=key_mapping, **kwargs)
        except (OSError, SafetensorError) as e:
            raise CheckpointError(
                f"the checkpoint in {path!r} could not be loaded ({type(e).__name__}: {e}). "
                "Its weights file may be missing, corrupt or half-written: save it again."
            ) from e


# How a backbone's own checkpoint names the weights trbert keeps under BERT's names (MPNet's layers hold
# BERT's weights under other names: q/k/v/o, and the attention's LayerNorm one level up).
CHECKPOINT_NAMES = {
    "roberta": {r"^roberta\.": "bert."},
    "mpnet": {r"^mpnet\.": "bert.", r"\.attention\.attn\.q\.": ".attention.self.query.",
              r"\.attention\.attn\.k\.": ".attention.self.key.", r"\.attention\.attn\.v\.": ".attention.self.value.",
              r"\.attention\.attn\.o\.": ".attention.output.dense.",
              r"\.attention\.LayerNorm\.": ".attention.output.LayerNorm."},
}
EMBEDDINGS = {"bert": BertEmbeddings, "roberta": RobertaEmbeddings, "mpnet": MPNetEmbeddings}
HEAD_ON_FIRST_TOKEN = ("roberta", "mpnet")  # backbones whose sequence classifier reads <s> (no pooler)

_CONFIG_KEYS = set(TRBertConfig.__dataclass_fields__) | {"num_labels", "id2label", "label2id", "problem_type"}


def _trbert_config(path: str, source, kwargs: dict):
    """A TRBertConfig from a checkpoint's own config, with the caller's overrides taken out of kwargs."""
    if source is None:
        try:
            source = AutoConfig.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"the checkpoint in {path!r} has no readable config.json ({e})") from e
    if source.model_type != "trbert" and source.model_type not in BACKBONE_OF:
        raise CheckpointError(
            f"the checkpoint in {path!r} is a {source.model_type!r} model; trbert loads BERT-family "
            f"encoders ({', '.join(BACKBONE_OF)})"
        )
    overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in _CONFIG_KEYS}
    values = source.to_dict()
    values.pop("model_type", None)
    backbone = BACKBONE_OF.get(source.model_type)
    if backbone is not None:
        values["backbone"] = backbone
        values.pop("sep_token_id", None)  # the default for the backbone; a RoBERTa config may not carry it
        values.pop("architectures", None)
    if "num_labels" in overrides and "id2label" not in overrides:
        values.pop("id2label", None)
        values.pop("label2id", None)
    return TRBertConfig.from_dict({**values, **overrides}), kwargs


def check_inputs(config: TRBertConfig, input_ids, attention_mask, inputs_embeds):
    """Clear errors for inputs the model cannot take, before anything runs. Returns the attention mask
    (all ones when None)."""
    check_shapes(config, input_ids, attention_mask, inputs_embeds)
    x = input_ids if input_ids is not None else inputs_embeds
    if attention_mask is None:
        attention_mask = torch.ones(x.shape[:2], dtype=torch.long, device=x.device)
    # Examples with no tokens, and (from input_ids) with nothing between [CLS] and [SEP], which is what an
    # empty text tokenizes to: a label for it would mean nothing. One read back to the host for both.
    present = attention_mask.bool()
    text = present & (input_ids != config.sep_token_id) if input_ids is not None else present.clone()
    text[:, 0] = False  # [CLS] (<s>)
    empty, blank = torch.stack([~present.any(1), ~text.any(1)]).tolist()
    check_present(empty, blank if input_ids is not None else [])
    return attention_mask


def check_shapes(config: TRBertConfig, input_ids, attention_mask, inputs_embeds) -> None:
    """The errors for inputs of the wrong type or shape (read from the tensors' metadata alone)."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids or inputs_embeds")
    x = input_ids if input_ids is not None else inputs_embeds
    name = "input_ids" if input_ids is not None else "inputs_embeds"
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor, got {type(x).__name__}; tokenize with return_tensors='pt' "
            "(or use trbert.encode)"
        )
    if input_ids is not None and (input_ids.dim() != 2 or input_ids.dtype not in (torch.long, torch.int)):
        raise TypeError(f"input_ids must be a 2-D integer tensor [batch, length], got {input_ids.dtype} of shape {tuple(input_ids.shape)}")
    if inputs_embeds is not None and inputs_embeds.dim() != 3:
        raise ValueError(f"inputs_embeds must be [batch, length, hidden], got shape {tuple(inputs_embeds.shape)}")
    batch, length = x.shape[:2]
    if batch == 0 or length == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}): there is no text to encode")
    limit = config.segment_length
    if length > limit and not config.long_input:
        raise ValueError(
            f"the input has {length} tokens but the model takes at most {limit}: tokenize with "
            f"truncation=True, max_length={limit}, or set long_input=True to run it as a long document"
        )
    if attention_mask is not None and (not isinstance(attention_mask, torch.Tensor)
                                       or tuple(attention_mask.shape) != (batch, length)):
        shape = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
        raise ValueError(f"attention_mask must be a tensor of shape {(batch, length)}, got {shape}")


def check_present(empty: list[bool], blank: list[bool]) -> None:
    """The errors for examples without tokens (`empty`) or without text between [CLS] and [SEP] (`blank`)."""
    if any(empty):
        raise ValueError(f"example(s) {_where(empty)} have no tokens (their attention_mask is all zeros)")
    if any(blank):
        raise ValueError(f"example(s) {_where(blank)} hold no text, only [CLS] and [SEP]: there is nothing to read "
                         "in them (an empty text, or one of characters the tokenizer drops)")


def _where(flags: list[bool]) -> list[int]:
    return [i for i, flag in enumerate(flags) if flag]


class TRBertModel(TRBertPreTrainedModel):
    """The encoder with reduction steps; outputs the usual fields plus `kept_lengths` per example."""

    _no_split_modules = ["BertEmbeddings", "RobertaEmbeddings", "MPNetEmbeddings", "BertLayer"]

    def __init__(self, config: TRBertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = EMBEDDINGS[config.backbone](config)
        self.encoder = TRBertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        for policy in self.encoder.policy:
            policy.out.is_policy_output = True
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        restore: bool = True,
        masked: bool | None = None,
        sample: bool | None = None,
        keep_actions: list[torch.Tensor] | None = None,
        step_states: bool = False,
        graph: bool = False,
        **kwargs,
    ) -> TRBertModelOutput:
        r"""
        restore: write each skipped token's state back at its position (`[B, n, d]` output); otherwise
            `last_hidden_state` holds only the tokens kept to the end, in order, padded to the longest.
        masked: run the reduction by masking instead of removal (default: in training mode, for a strategy
            that samples, the learned policy). Removal is differentiable too (and cheaper); masking keeps
            the batch one [B, n, d] tensor.
        sample: sample the keep actions from the policy probabilities (default: in training mode).
        keep_actions: one `[B, n]` bool tensor per step: the decisions to apply (at original positions).
        step_states: also return the hidden states entering each reduction step (masked mode only).
        graph: removal without reading anything back to the host, for a traced graph (`trbert.deployment.
            export_onnx`); the same decisions and outputs as removal (inference only).
        """
        attention_mask = check_inputs(self.config, input_ids, attention_mask, inputs_embeds)
        masked = self.training and self.encoder.strategy.samples and not graph if masked is None else masked
        sample = self.training and not graph if sample is None else sample
        segment = None
        length = attention_mask.shape[1]
        if length > self.config.segment_length:  # a long document: segments with their own positions
            if masked:
                raise ValueError("long inputs run in removal mode only: pass masked=False")
            if position_ids is not None:
                raise ValueError("long inputs take no position_ids: each segment counts its own from 0")
            limit = self.config.segment_length
            offset = self.config.pad_token_id + 1 if self.config.backbone in OFFSET_POSITIONS else 0
            where = torch.arange(length, device=attention_mask.device)
            segment = (where // limit).expand(attention_mask.shape[0], -1)
            position_ids = (where % limit + offset).expand(attention_mask.shape[0], -1)
        # execution="graph": inference in graph mode where it applies (not for sampling, given actions, long inputs)
        graph = graph or (self.config.execution == "graph" and not self.training and not masked and not sample
                          and keep_actions is None and not step_states and segment is None)
        embedding_output = self.embeddings(
            input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids, inputs_embeds=inputs_embeds
        )
        result = self.encoder(
            embedding_output,
            attention_mask,
            input_ids=input_ids,
            restore=restore,
            masked=masked,
            sample=sample,
            keep_actions=keep_actions,
            step_states=step_states,
            segment=segment,
            graph=graph,
        )
        pooled = self.pooler(result.last_hidden_state) if self.pooler is not None else None
        return TRBertModelOutput(
            last_hidden_state=result.last_hidden_state,
            pooler_output=pooled,
            kept_lengths=result.kept_lengths,
            kept_fraction=result.kept_fraction,
            kept_steps=result.kept_steps,
            keep_log_prob=result.keep_log_prob,
            step_states=result.step_states,
            exit_predictions=result.exit_predictions,
            exited=result.exited,
        )


class TRBertForSequenceClassification(TRBertPreTrainedModel):
    def __init__(self, config: TRBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        first_token = config.backbone in HEAD_ON_FIRST_TOKEN
        self.bert = TRBertModel(config, add_pooling_layer=not first_token)
        if first_token:
            self.classifier = RobertaClassificationHead(config)
        else:
            dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, masked=None, sample=None, keep_actions=None, graph=False, **kwargs):
        outputs = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                            restore=False, masked=masked, sample=sample, keep_actions=keep_actions, graph=graph)
        if self.config.backbone in HEAD_ON_FIRST_TOKEN:
            logits = self.classifier(outputs.last_hidden_state)
        else:
            logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = self._loss(logits, labels) if labels is not None else None
        return TRBertSequenceClassifierOutput(loss=loss, logits=logits, **_reduction_fields(outputs))

    def _loss(self, logits, labels):
        if self.config.problem_type is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        if self.config.problem_type == "regression":
            return MSELoss()(logits.squeeze(-1), labels.squeeze(-1).to(logits.dtype))
        if self.config.problem_type == "single_label_classification":
            return CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
        return BCEWithLogitsLoss()(logits, labels.to(logits.dtype))


class TRBertForQuestionAnswering(TRBertPreTrainedModel):
    """Span extraction; skipped tokens are restored so every position gets a start and end score."""

    def __init__(self, config: TRBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = TRBertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, start_positions=None, end_positions=None, masked=None, sample=None,
                keep_actions=None, graph=False, **kwargs):
        outputs = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                            restore=True, masked=masked, sample=sample, keep_actions=keep_actions, graph=graph)
        logits = self.qa_outputs(outputs.last_hidden_state)
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            ignored = start_logits.size(1)
            loss_fct = CrossEntropyLoss(ignore_index=ignored)
            loss = (loss_fct(start_logits, start_positions.clamp(0, ignored))
                    + loss_fct(end_logits, end_positions.clamp(0, ignored))) / 2
        return TRBertQuestionAnsweringOutput(
            loss=loss, start_logits=start_logits, end_logits=end_logits, **_reduction_fields(outputs)
        )


class TRBertForTokenClassification(TRBertPreTrainedModel):
    """Sequence labelling; skipped tokens are restored so every position is labelled."""

    def __init__(self, config: TRBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = TRBertModel(config, add_pooling_layer=False)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, masked=None, sample=None, keep_actions=None, exit_logits=False,
                graph=False, **kwargs):
        r"""exit_logits: also return the early-exit classifiers' logits at every step, for every token
        (masked mode; for training them)."""
        if exit_logits and self.config.selection != "early_exit":
            raise ValueError("exit_logits needs a model with selection='early_exit'")
        outputs = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                            restore=True, masked=masked, sample=sample, keep_actions=keep_actions,
                            step_states=exit_logits, graph=graph)
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        if outputs.exited is not None:  # early exit: a token that left is labelled where it left
            logits = torch.where(outputs.exited[..., None], outputs.exit_predictions.to(logits.dtype), logits)
        loss = None
        if labels is not None:
            loss = CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
        exits = None
        if exit_logits:
            exits = [head(self.dropout(h)) for head, h in zip(self.bert.encoder.exits, outputs.step_states)]
        return TRBertTokenClassifierOutput(loss=loss, logits=logits, exit_logits=exits, **_reduction_fields(outputs))


AutoConfig.register("trbert", TRBertConfig, exist_ok=True)  # replaces the stand-in of trbert.registration
AutoModel.register(TRBertConfig, TRBertModel)
AutoModelForSequenceClassification.register(TRBertConfig, TRBertForSequenceClassification)
AutoModelForQuestionAnswering.register(TRBertConfig, TRBertForQuestionAnswering)
AutoModelForTokenClassification.register(TRBertConfig, TRBertForTokenClassification)
