"""trbert: dynamic token reduction (TR-BERT) for BERT-family encoders, native to Hugging Face transformers.

The public names below load on first use, so `import trbert` (and the `trbert` command line) starts
fast. Importing trbert also makes transformers know it: the Auto classes load trbert checkpoints and
`pipeline("question-answering")` builds trbert's extractive pipeline (`trbert.registration`).
"""

import importlib

from . import registration

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "TRBertConfig": "modeling",  # with the models, so that the Auto classes know them
    "Cost": "cost",
    "reduction_cost": "cost",
    "encode": "inputs",
    "BudgetError": "errors",
    "CheckpointError": "errors",
    "DataError": "errors",
    "TRBertForQuestionAnswering": "modeling",
    "TRBertForSequenceClassification": "modeling",
    "TRBertForTokenClassification": "modeling",
    "TRBertModel": "modeling",
    "TRBertPreTrainedModel": "modeling",
    "OnnxTRModel": "deployment",
    "QuestionAnsweringPipeline": "pipelines",
    "train_to_budget": "budget",
    "AttentionTopKStrategy": "strategies",
    "EarlyExitStrategy": "strategies",
    "FixedFractionStrategy": "strategies",
    "KeepStrategy": "strategies",
    "PolicyStrategy": "strategies",
    "StepProposal": "strategies",
    "ThresholdStrategy": "strategies",
    "Tokens": "strategies",
    "attention_received": "strategies",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        try:  # a subpackage or module: trbert.training, trbert.data, ...
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'trbert' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])


registration.install()
