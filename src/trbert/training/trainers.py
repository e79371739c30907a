"""The Trainers of the stages: each a `transformers.Trainer` whose loss is its stage's objective.

* `FinetuneTrainer`: the task loss, the task head at its own learning rate (`head_learning_rate`).
* `ReductionTrainer`: REINFORCE on the keep actions (policy stage), plus distillation (joint stage).
* `FrozenPolicyTrainer`: distillation with the keep decisions of inference (frozen policies, budget).
* `ExitTrainer`: the early-exit classifiers (token classification).
"""

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from transformers import Trainer

from ..tasks import IGNORE, Task

TEACHER_LOGITS = "teacher_logits"  # a training column: the teacher's logits for the example (`teacher_logits`)


def head_parameters(model) -> list[str]:
    """Names of the task head's parameters: all but the backbone's embeddings and encoder layers."""
    base = model.base_model
    backbone = {id(p) for part in (base.embeddings, base.encoder) for p in part.parameters()}
    return [n for n, p in model.named_parameters() if id(p) not in backbone]


class FinetuneTrainer(Trainer):
    """A Trainer whose optimizer gives the task head its own learning rate (`head_learning_rate`)."""

    def __init__(self, *args, head_learning_rate: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if head_learning_rate is not None and head_learning_rate <= 0:
            raise ValueError(f"head_learning_rate must be > 0, got {head_learning_rate}")
        self.head_learning_rate = head_learning_rate

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        # The Trainer may ask again for the optimizer it already built: split its groups only once.
        if self.head_learning_rate is None or getattr(optimizer, "_head_split", False):
            return optimizer
        model = self.model if model is None else model
        names = set(head_parameters(model))
        head = {id(p) for n, p in model.named_parameters() if n in names}
        # Split each group (with and without weight decay) in two; the schedule then scales both rates.
        for group in list(optimizer.param_groups):
            moved = [p for p in group["params"] if id(p) in head]
            if moved:
                group["params"] = [p for p in group["params"] if id(p) not in head]
                options = {k: v for k, v in group.items() if k != "params"}
                optimizer.add_param_group({**options, "params": moved, "lr": self.head_learning_rate})
        optimizer._head_split = True
        return optimizer


class _ExtraLog(Trainer):
    """A Trainer that adds the figures its loss left in `self._extra` (reward, kept fraction) to its logs."""

    def log(self, logs, *args, **kwargs):
        if getattr(self, "_extra", None) and "loss" in logs:
            logs = {**logs, **{k: round(v, 4) for k, v in self._extra.items()}}
        super().log(logs, *args, **kwargs)


class ReductionTrainer(_ExtraLog):
    """A Trainer whose loss is the TR-BERT objective: REINFORCE on the keep actions, plus distillation
    from `teacher` (a model run alongside, in eval mode) in the joint stage."""

    loss_is_scaled_for_ga = False

    def __init__(self, *args, task: Task, samples: int, alpha: float, frozen_backbone: bool, teacher=None,
                 guide_rate: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.task, self.samples, self.alpha, self.frozen_backbone = task, samples, alpha, frozen_backbone
        self.teacher = None if teacher is None else teacher.to(self.args.device).eval().requires_grad_(False)
        self.guide_rate = guide_rate

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.frozen_backbone:
            model.eval()  # no dropout in the frozen backbone: rewards differ only by the sampled actions
        labels = {k: inputs.pop(k) for k in self.task.label_keys}
        cached = inputs.pop(TEACHER_LOGITS, None)
        K = self.samples
        guided = K > 1 and self.state.global_step < self.guide_rate * self.state.max_steps
        repeated = {k: v.repeat_interleave(K, dim=0) for k, v in inputs.items()}
        repeated_labels = {k: v.repeat_interleave(K, dim=0) for k, v in labels.items()}
        if guided:  # imitation warm-up: the K-th trajectory of each example is the residual heuristic's
            actions = residual_actions(model, inputs, labels, self.task)
            sampled = model(**{k: v.repeat_interleave(K - 1, dim=0) for k, v in inputs.items()}, sample=True,
                            masked=False)
            imitated = model(**inputs, keep_actions=actions, masked=False, sample=False)
            order = torch.cat([torch.arange(len(sampled.kept_fraction)).view(-1, K - 1),
                               len(sampled.kept_fraction) + torch.arange(len(imitated.kept_fraction))[:, None]], 1).view(-1)
            out = _merge_outputs(sampled, imitated, order)
        else:
            out = model(**repeated, sample=True, masked=False)
        task_loss = self.task.losses(out, repeated_labels)
        kept = out.kept_fraction.mean(dim=1)
        reward = (-task_loss.detach() - self.alpha * kept).view(-1, K)
        advantage = (reward - reward.mean(dim=1, keepdim=True)).view(-1)
        loss = -(advantage * out.keep_log_prob).mean()
        if self.teacher is not None:
            teacher = _teacher_outputs(self.teacher, inputs, cached)
            for name in ("logits", "start_logits", "end_logits"):
                if getattr(teacher, name, None) is not None:
                    setattr(teacher, name, getattr(teacher, name).repeat_interleave(K, dim=0))
            loss = loss + self.task.distill(out, teacher, repeated["attention_mask"])
        self._log_extra(reward, kept, task_loss)
        return (loss, out) if return_outputs else loss

    def _log_extra(self, reward, kept, task_loss):
        self._extra = {"reward": reward.mean().item(), "kept": kept.mean().item(), "task_loss": task_loss.mean().item()}


class FrozenPolicyTrainer(_ExtraLog):
    """Distillation with the keep decisions made as at inference (no sampling): the keep rule, then the
    per-example budget `max_keep_ratio`. The policies are frozen; the backbone and head learn to work
    from the tokens the budget leaves them."""

    def __init__(self, *args, task: Task, teacher, **kwargs):
        super().__init__(*args, **kwargs)
        self.task = task
        self.teacher = teacher.to(self.args.device).eval().requires_grad_(False)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        for key in self.task.label_keys:
            inputs.pop(key)
        cached = inputs.pop(TEACHER_LOGITS, None)
        out = model(**inputs, sample=False, masked=False)
        teacher = _teacher_outputs(self.teacher, inputs, cached)
        loss = self.task.distill(out, teacher, inputs["attention_mask"])
        self._extra = {"kept": out.kept_fraction.mean().item()}
        return (loss, out) if return_outputs else loss


def _teacher_outputs(teacher, inputs: dict, cached: torch.Tensor | None):
    """The teacher's outputs for a batch: its logits from the training set's `TEACHER_LOGITS` column when
    there is one, else a forward pass."""
    if cached is not None:
        return SimpleNamespace(logits=cached)
    with torch.no_grad():
        return teacher(**inputs)


def _merge_outputs(a, b, order: torch.Tensor):
    """The rows of two model outputs, concatenated and reordered (tensors with a batch dimension only)."""
    merged = {}
    for name, value in a.items():
        other = getattr(b, name, None)
        if isinstance(value, torch.Tensor) and isinstance(other, torch.Tensor) and value.dim() >= 1:
            if value.dim() >= 2 and value.shape[1:] != other.shape[1:]:  # different padding: pad the shorter
                width = max(value.shape[1], other.shape[1])
                value, other = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, width - t.shape[1])) for t in (value, other))
            merged[name] = torch.cat([value, other])[order.to(value.device)]
    return type(a)(**merged)


def residual_scores(model, inputs: dict, labels: dict, task: Task, depth: float = 0.75):
    """The residual heuristic: per reduction step, [B, n] scores |grad_{h_m} L . (h_m - h_l)|, with h_l
    a token's state entering the step's layer l and h_m its state after the first m = ceil(depth * L)
    layers of the full model (at most L - 1; 5 of 6, 9 of 12): a first-order estimate of how much the
    task loss changes if the token skipped layers l..m. Returns (scores, states entering each step)."""
    config = model.config
    steps = config.reduction_layers
    layers = model.base_model.encoder.layer
    # At least one layer after m: the head reads few positions ([CLS]), so the gradient reaches the other
    # tokens' states only through the layers above h_m.
    m = max(1, min(len(layers) - 1, max(math.ceil(depth * len(layers)), steps[-1] + 1)))
    mask = inputs["attention_mask"].bool()
    entering, captured = {}, {}

    def keep_input(index):
        def hook(module, args):
            entering[index] = args[0].detach()
        return hook

    def leaf_output(module, args, output):
        captured["h"] = output.detach().requires_grad_(True)
        return captured["h"]

    handles = [layers[l].register_forward_pre_hook(keep_input(l)) for l in steps]
    handles.append(layers[m - 1].register_forward_hook(leaf_output))
    try:
        with torch.enable_grad():
            out = model(**inputs, masked=True, sample=False, keep_actions=[mask] * len(steps))
            (grad,) = torch.autograd.grad(task.losses(out, labels).sum(), captured["h"])
    finally:
        for handle in handles:
            handle.remove()
    h_m = captured["h"].detach()
    scores = [(grad * (h_m - entering[layer])).sum(-1).abs() for layer in steps]
    return scores, [entering[layer] for layer in steps]


def residual_actions(model, inputs: dict, labels: dict, task: Task) -> list[torch.Tensor]:
    """The residual heuristic's keep actions ([B, n] bool per step) for imitation warm-up: each step
    keeps, among the tokens the previous step kept, the round(sum p) best-scoring ones, p being the
    step's policy probabilities (as many tokens as the policy keeps on average)."""
    scores, states = residual_scores(model, inputs, labels, task)
    actions, kept = [], inputs["attention_mask"].bool()
    with torch.no_grad():
        for step, (score, state) in enumerate(zip(scores, states)):
            score = score.masked_fill(~kept, float("-inf"))
            p = model.base_model.encoder.policy[step](state).masked_fill(~kept, 0.0)
            k = torch.round(p.sum(1)).clamp(min=1).long()
            rank = torch.argsort(torch.argsort(score, dim=1, descending=True), dim=1)
            kept = kept & (rank < k[:, None])
            actions.append(kept)
    return actions



class ExitTrainer(Trainer):
    """Trains the early-exit classifiers: each step's internal classifier learns the token labels.
    With `self_sampling`, every parameter trains and each token leaves after a step drawn at random
    (or never), so the upper layers learn to work with tokens that left (the train/test gap of early exit)."""

    loss_is_scaled_for_ga = False

    def __init__(self, *args, self_sampling: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.self_sampling = self_sampling

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.self_sampling:
            model.eval()  # the backbone is frozen: no dropout
        labels = inputs.pop("labels")
        mask = inputs["attention_mask"].bool()
        steps = len(model.config.reduction_layers)
        if self.self_sampling:
            leave = torch.randint(0, steps + 1, mask.shape, device=mask.device)  # steps: never leaves
            actions = [(leave > s) & mask for s in range(steps)]
        else:
            actions = [mask] * steps
        out = model(**inputs, masked=True, keep_actions=actions, exit_logits=True)
        exit_loss = torch.stack([
            torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE)
            for logits in out.exit_logits
        ]).mean()
        loss = exit_loss
        if self.self_sampling:
            loss = loss + torch.nn.functional.cross_entropy(out.logits.transpose(1, 2), labels, ignore_index=IGNORE)
        return (loss, out) if return_outputs else loss
