"""Training: the TR-BERT recipe's stages on `transformers.Trainer` (`stages`), their Trainers
(`trainers`) and their files (`checkpoints`).

1. `finetune`: the backbone with its task head, a plain transformers model (the full model).
2. `train_policy`: the policies by REINFORCE, the backbone frozen.
3. `train_joint`: every parameter, distillation from the stage-1 model plus REINFORCE (or, with
   `freeze_policies=True`, the backbone and head by distillation with the keep decisions of inference).
Optionally `train_capped` (a token budget), and for taggers `train_exits` (token-level early exit).
"""

from .checkpoints import (data_fingerprint, last_complete_checkpoint, log_path, reuse_stage, save_atomically,
    stage_done, stage_record, write_log)
from .stages import (Collator, StageSettings, finetune, fit_head, mixed_precision, subset, teacher_logits,
    tokenize_dataset, train_capped, train_exits, train_joint, train_policy)
from .trainers import (ExitTrainer, FinetuneTrainer, FrozenPolicyTrainer, ReductionTrainer, head_parameters,
    residual_actions, residual_scores)

__all__ = [
    "Collator", "ExitTrainer", "FinetuneTrainer", "FrozenPolicyTrainer", "ReductionTrainer", "StageSettings",
    "data_fingerprint", "finetune", "fit_head", "head_parameters", "last_complete_checkpoint", "log_path",
    "mixed_precision", "residual_actions", "residual_scores", "reuse_stage", "save_atomically", "stage_done",
    "stage_record", "subset", "teacher_logits", "tokenize_dataset", "train_capped", "train_exits", "train_joint",
    "train_policy", "write_log",
]
