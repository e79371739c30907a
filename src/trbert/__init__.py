"""trbert: dynamic token reduction (TR-BERT) for BERT-family encoders, native to Hugging Face transformers."""

from .configuration import TRBertConfig
from .cost import Cost, reduction_cost
from .inputs import encode
from .modeling import (
    CheckpointError,
    TRBertForQuestionAnswering,
    TRBertForSequenceClassification,
    TRBertForTokenClassification,
    TRBertModel,
    TRBertPreTrainedModel,
)
from .qa_pipeline import QuestionAnsweringPipeline
from .qa_pipeline import register as _register_qa_pipeline
from .strategies import (
    AttentionTopKStrategy,
    EarlyExitStrategy,
    FixedFractionStrategy,
    KeepStrategy,
    PolicyStrategy,
    StepProposal,
    ThresholdStrategy,
    Tokens,
    attention_received,
)

__version__ = "0.1.0"

_register_qa_pipeline()

__all__ = [
    "CheckpointError",
    "Cost",
    "encode",
    "reduction_cost",
    "attention_received",
    "AttentionTopKStrategy",
    "EarlyExitStrategy",
    "FixedFractionStrategy",
    "KeepStrategy",
    "PolicyStrategy",
    "QuestionAnsweringPipeline",
    "StepProposal",
    "TRBertConfig",
    "TRBertForQuestionAnswering",
    "TRBertForSequenceClassification",
    "TRBertForTokenClassification",
    "TRBertModel",
    "TRBertPreTrainedModel",
    "ThresholdStrategy",
    "Tokens",
]
