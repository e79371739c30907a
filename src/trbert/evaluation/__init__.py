"""Evaluation: a model against the full model on the same examples, with honest statistics and timing.

* `prediction`: the one prediction loop (`run_batches`) and the classifier's (`predict_batches`).
* `statistics`: the one paired bootstrap, kept fractions, the policy's reward.
* `timing`: the one timing harness (`wall_speedup`: two models interleaved).
* `compare`: per task, a model against the full model (`evaluate_classifier`, `evaluate_qa`,
  `evaluate_tagger`).
* `baselines`: truncation and the segment baseline for long documents.
* `records`: the results files every benchmark writes.

Works for trbert models (their outputs carry `kept_lengths`) and for plain transformers models (the
full model: every layer runs on every non-padding token). Costs are counted per example on its real
(unpadded) length, so the FLOP speed-up does not depend on the batch size.
"""

from .baselines import SegmentBaseline, truncation_baseline
from .compare import (QAPredictions, TagPredictions, comparison, evaluate_classifier, evaluate_qa, evaluate_tagger,
    predict_qa, predict_tags)
from .prediction import (BatchOutputs, Predictions, device_of, encoded_batches, eval_mode, model_macs,
    predict_batches, predict_encoded, run_batches, synchronize)
from .records import RECORD_FIELDS, machine, results_record, versions, write_results_json
from .statistics import BootstrapResult, check_labels, kept_fraction, mean_reward, micro_f1_statistic, paired_bootstrap
from .timing import forward_pass, spread, timed_side_by_side, wall_speedup

__all__ = [
    "BatchOutputs", "BootstrapResult", "Predictions", "QAPredictions", "RECORD_FIELDS", "SegmentBaseline",
    "TagPredictions", "check_labels", "comparison", "device_of", "encoded_batches", "eval_mode",
    "evaluate_classifier", "evaluate_qa", "evaluate_tagger", "forward_pass", "kept_fraction", "machine",
    "mean_reward", "micro_f1_statistic", "model_macs", "paired_bootstrap", "predict_batches", "predict_encoded",
    "predict_qa", "predict_tags", "results_record", "run_batches", "spread", "synchronize", "timed_side_by_side",
    "truncation_baseline", "versions", "wall_speedup", "write_results_json",
]
