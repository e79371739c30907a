"""The reduction mechanism: the encoder whose later layers see only the tokens that were kept.

One encoder serves every head. It runs in one of two modes:

* removal (inference): the tokens of the batch are packed into one [T, d] tensor; after each
  reduction step the skipped tokens are dropped from it, so later layers do less work.
  With `restore=True` each skipped token's state (from the layer where it was skipped) is
  written back at its original position for token-level heads.
* masked (training): the batch stays one [B, n, d] tensor; skipped tokens are removed from
  the keys of later layers and their states are frozen. For the same decisions this equals
  removal; it lets the keep actions be sampled and returns their log-probabilities.
* graph (export): removal written without reading anything back to the host, so that a traced
  graph (ONNX) holds it for any input: the tokens stay packed as in removal, and each layer's
  attention runs on a grid of every example's kept tokens, as wide as the most any example keeps
  (at batch 1, exactly its kept tokens), the empty slots masked. The same decisions as removal.

Padding is never kept; position 0 ([CLS] / <s>) always is. Every decision is made per
example, so an example's outputs do not depend on the rest of its batch.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.bert.modeling_bert import BertLayer, eager_attention_forward
from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

from .strategies import KeepPolicy, KeepStrategy, Tokens, for_config

_EPS = 1e-6


@dataclass
class EncoderResult:
    last_hidden_state: torch.Tensor  # [B, n, d] restored/masked, or [B, m, d] kept tokens only
    kept_lengths: torch.Tensor  # [B, steps] tokens kept by each step
    kept_fraction: torch.Tensor  # [B, steps] kept / original non-padding length
    keep_log_prob: torch.Tensor | None  # [B] log-probability of the sampled or given actions
    step_states: list[torch.Tensor] | None = None  # masked mode: [B, n, d] entering each step (when asked)
    # Strategies that predict each token's output (early exit), with restore: [B, n, C] the prediction
    # of the step where each token left, and [B, n] which tokens left.
    exit_predictions: torch.Tensor | None = None
    exited: torch.Tensor | None = None
    # [B, n] the reduction steps each token passed: 0 skipped at the first, len(steps) kept to the end, -1 padding
    kept_steps: torch.Tensor | None = None


class TRBertEncoder(nn.Module):
    """BERT layers (the weights and names of `BertEncoder`) plus one keep policy per reduction step."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.layer = nn.ModuleList([BertLayer(config, layer_idx=i) for i in range(config.num_hidden_layers)])
        steps = config.reduction_layers
        selection = config.selection
        # What decides at each step: a keep policy (TR-BERT), an internal classifier (early exit), or the
        # attention a token receives in the layer after the step (no modules of its own).
        policy = [KeepPolicy(config.hidden_size, config.policy_hidden_size) for _ in steps] if selection == "policy" else []
        self.policy = nn.ModuleList(policy)
        exits = [nn.Linear(config.hidden_size, config.num_labels) for _ in steps] if selection == "early_exit" else []
        self.exits = nn.ModuleList(exits)
        self.strategy: KeepStrategy = for_config(config, self.layer)
        # Per layer, one projection with the query, key and value weights stacked (`fuse_query_key_value`):
        # the packed layers then make one call instead of three. None: the three projections.
        self.qkv: nn.ModuleList | None = None
        # MPNet: a bias on every layer's attention scores from the tokens' relative positions (shared by the
        # layers). Kept tokens keep the bias of their original positions.
        self.relative_attention_bias = (nn.Embedding(config.relative_attention_num_buckets, config.num_attention_heads)
                                        if config.backbone == "mpnet" else None)

    def position_bias(self, query_position: torch.Tensor, key_position: torch.Tensor) -> torch.Tensor | None:
        """[..., H, Lq, Lk] MPNet's attention bias between tokens at these original positions ([..., Lq] and
        [..., Lk]); None for backbones without one."""
        if self.relative_attention_bias is None:
            return None
        relative = key_position[..., None, :] - query_position[..., :, None]
        bucket = MPNetEncoder.relative_position_bucket(relative, num_buckets=self.config.relative_attention_num_buckets)
        values = self.relative_attention_bias(bucket)  # [..., Lq, Lk, H]
        rank = values.dim()
        return values.permute(*range(rank - 3), rank - 1, rank - 3, rank - 2)  # (no negative axes: ONNX)

    def fuse_query_key_value(self) -> None:
        """Give each layer one stacked query/key/value projection (`self.qkv`), used where queries, keys
        and values come from the same tokens. At batch 1 with few kept tokens a projection call costs about
        as much as its arithmetic (int8 above all, `trbert.deployment.quantize_int8`); the outputs are the
        three projections'."""
        fused = []
        for layer in self.layer:
            sa = layer.attention.self
            parts = (sa.query, sa.key, sa.value)
            qkv = nn.Linear(parts[0].in_features, sum(p.out_features for p in parts)).to(sa.query.weight)
            with torch.no_grad():
                qkv.weight.copy_(torch.cat([p.weight for p in parts]))
                qkv.bias.copy_(torch.cat([p.bias for p in parts]))
            fused.append(qkv)
        self.qkv = nn.ModuleList(fused)

    # ------------------------------------------------------------------ selection
    def _forced(self, tokens: Tokens, input_ids: torch.Tensor | None) -> torch.Tensor:
        """Tokens that every step keeps: [CLS] always; separators and the first segment optionally."""
        forced = tokens.position == 0
        if input_ids is not None and (self.config.keep_sep or self.config.keep_first_segment):
            ids = input_ids[tokens.example, tokens.position]
            is_sep = ids == self.config.sep_token_id
            if self.config.keep_sep:
                forced = forced | is_sep
            if self.config.keep_first_segment:
                n = input_ids.shape[1]
                sep_pos = torch.where(input_ids == self.config.sep_token_id, torch.arange(n, device=ids.device), n)
                first_sep = sep_pos.min(dim=1).values
                forced = forced | (tokens.position <= first_sep[tokens.example])
        return forced

    def _select(self, step, tokens, input_ids, action, sample):
        """Keep decisions [T], their log-probabilities per example [B] (or None) and the strategy's
        prediction per token [T, C] (or None) at one step."""
        config = self.config
        modules = self.exits if config.selection == "early_exit" else self.policy
        proposal = self.strategy.propose(step, tokens, modules[step] if step < len(modules) else None, config)
        forced = self._forced(tokens, input_ids)
        log_prob = None
        if sample and action is None and proposal.prob is None:
            if not self.training:
                raise ValueError(f"{type(self.strategy).__name__} has no keep probabilities to sample from")
            sample = False  # a rule: in training mode (where sampling is the default) it applies as it is
        if action is not None or sample:
            if action is not None:
                keep = action[tokens.example, tokens.position].bool()
            else:
                keep = torch.bernoulli(proposal.prob.detach()).bool()
            keep = keep | forced
            if proposal.prob is not None:
                p = proposal.prob.clamp(_EPS, 1 - _EPS)
                token_lp = torch.where(keep, p.log(), (1 - p).log()).masked_fill(forced, 0.0)
                log_prob = token_lp.new_zeros(tokens.counts.shape[0]).scatter_add(0, tokens.example, token_lp)
            return keep, log_prob, proposal.prediction
        # Deterministic decisions: the proposal, always-kept tokens, then the per-example budget.
        keep = proposal.keep | forced
        budget = torch.floor(tokens.length * config.max_keep_ratio + 1e-6).long()
        if proposal.budget is not None:
            budget = torch.minimum(budget, proposal.budget)
        # The cut runs whether or not a budget binds: asking first would read the counts back to the host.
        big = torch.finfo(proposal.score.dtype).max
        key = torch.where(forced, big, torch.where(keep, proposal.score.clamp(-1e30, 1e30), -big))
        keep = (keep & (_rank_within_example(key, tokens) < budget[tokens.example])) | forced
        return keep, log_prob, proposal.prediction

    def _step(self, step, tokens, input_ids, keep_actions, sample, log_prob):
        """One reduction step's decisions, with the log-probabilities summed over the steps so far."""
        action = keep_actions[step] if keep_actions is not None else None
        keep, step_log_prob, prediction = self._select(step, tokens, input_ids, action, sample)
        if step_log_prob is not None:
            log_prob = step_log_prob if log_prob is None else log_prob + step_log_prob
        return keep, log_prob, prediction

    # ------------------------------------------------------------------ layers
    def _attention(self, layer: BertLayer, q, k, v, sizes: "Lengths", attended: "Lengths | None" = None,
                   positions: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Self-attention over packed tokens, each group (an example, or a segment) attending within itself;
        no padding is computed. `sizes`: the queries of each group; `attended`: its keys and values, when
        they differ. The call depends on where it runs (`attention_path`): one FlashAttention call over
        all groups (`varlen_attn`: CUDA, half precision), one call per group (CPU, where it is fastest), or
        one padded call with a mask (other GPU cases). `positions`: the original positions of the queries
        and of the keys, for a backbone with a position bias (MPNet; the variable-length kernel takes none)."""
        sa = layer.attention.self
        implementation = self.config._attn_implementation
        sdpa = implementation == "sdpa"  # no mask to build or check: PyTorch's kernel directly
        dropout = sa.dropout.p if self.training else 0.0
        attended = attended or sizes
        heads = (sa.num_attention_heads, sa.attention_head_size)
        biased = self.relative_attention_bias is not None
        path = attention_path(q.device, q.dtype, dropout) if sdpa else "per_example"
        if path == "varlen" and biased:
            path = "padded"
        if path == "varlen":
            out = _varlen_attn(q.reshape(-1, *heads), k.reshape(-1, *heads), v.reshape(-1, *heads),
                               sizes.cumulative, attended.cumulative, sizes.longest, attended.longest)
            return out.reshape(-1, sa.all_head_size)
        if path == "padded":
            return _padded_attention(q, k, v, sizes, attended, heads, sa.scaling,
                                     self.position_bias if biased else None, positions)
        attend: Callable | None = None if sdpa else ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)

        def run(qe, ke, ve, batch, pq=None, pk=None):  # [batch * len, H, dh] -> [batch * len, H * dh]
            shape = (batch, -1, *heads)
            q4, k4, v4 = (x.reshape(shape).transpose(1, 2) for x in (qe, ke, ve))
            bias = self.position_bias(pq.reshape(batch, -1), pk.reshape(batch, -1)) if biased else None
            if sdpa:
                out = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=bias, dropout_p=dropout,
                                                     scale=sa.scaling).transpose(1, 2)
            else:
                out, _ = attend(sa, q4, k4, v4, bias, dropout=dropout, scaling=sa.scaling)
            return out.reshape(-1, sa.all_head_size)

        if len(set(sizes.host)) == 1 and len(set(attended.host)) == 1:  # equal lengths: one batched call
            return run(q, k, v, len(sizes.host), *(positions if biased else ()))
        parts = [q.split(sizes.host), k.split(attended.host), v.split(attended.host)]
        if biased:
            parts += [positions[0].split(sizes.host), positions[1].split(attended.host)]
        return torch.cat([run(qe, ke, ve, 1, *pe) for qe, ke, ve, *pe in zip(*parts)])

    def _layer_packed(self, i: int, h: torch.Tensor, sizes: "Lengths", memory=None,
                      position: torch.Tensor | None = None) -> torch.Tensor:
        """Layer i on packed tokens (`sizes`: tokens per example, or per segment). `memory`: (states,
        order, attended, their positions) of the skipped tokens that still serve as keys and values:
        `order` merges [h; states] example by example. `position`: each token's original position."""
        layer = self.layer[i]
        sa = layer.attention.self
        if memory is None:
            if self.qkv is not None:
                q, k, v = self.qkv[i](h).split(sa.all_head_size, dim=-1)
            else:
                q, k, v = sa.query(h), sa.key(h), sa.value(h)
            context = self._attention(layer, q, k, v, sizes, positions=(position, position))
        else:
            states, order, attended, state_position = memory
            both = torch.cat([h, states])[order]
            keys_at = torch.cat([position, state_position])[order]
            context = self._attention(layer, sa.query(h), sa.key(both), sa.value(both), sizes, attended,
                                      positions=(position, keys_at))
        return _after_attention(layer, context, h, self.training)

    def _layer_padded(self, i: int, h, example, rank, sizes: "Lengths", position) -> torch.Tensor:
        m = sizes.longest
        padded = h.new_zeros(len(sizes.host), m, h.shape[-1])
        padded[example, rank] = h
        mask = torch.zeros(len(sizes.host), m, dtype=torch.long, device=h.device)
        mask[example, rank] = 1
        at = torch.zeros(len(sizes.host), m, dtype=torch.long, device=h.device)
        at[example, rank] = position
        mask = self._layer_mask(padded, mask, at)
        return self.layer[i](padded, mask)[example, rank]

    def _layer_mask(self, h: torch.Tensor, keys: torch.Tensor, position: torch.Tensor):
        """The attention mask a BERT layer takes for [B, n, d] states whose keys `keys` [B, n] may be attended
        to; for MPNet, the position bias of the tokens at `position` [B, n] added (masked keys at -inf)."""
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=h, attention_mask=keys.long())
        bias = self.position_bias(position, position)
        if bias is None:
            return mask
        allowed = keys.bool()[:, None, None, :]
        return bias.to(h.dtype).masked_fill(~allowed, torch.finfo(h.dtype).min)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        restore: bool = True,
        masked: bool = False,
        sample: bool = False,
        keep_actions: list[torch.Tensor] | None = None,
        step_states: bool = False,
        segment: torch.Tensor | None = None,
        graph: bool = False,
    ) -> EncoderResult:
        """`segment`: [B, n] the segment of each token of a long document: until the first reduction
        step, attention stays within a segment (removal mode only). `graph`: the export mode (inference)."""
        if keep_actions is not None and len(keep_actions) != len(self.config.reduction_layers):
            raise ValueError(
                f"keep_actions has {len(keep_actions)} entries but the model has "
                f"{len(self.config.reduction_layers)} reduction steps"
            )
        if masked and segment is not None:
            raise ValueError("long inputs (segments) run in removal mode only")
        if graph:
            if masked or sample or keep_actions is not None or step_states or segment is not None:
                raise ValueError("graph mode (export) runs inference alone: the model's own decisions, no "
                                 "sampling, masking, given actions, step states or long inputs")
            return self._forward_graph(hidden_states, attention_mask.bool(), input_ids, restore)
        if masked:
            return self._forward_masked(hidden_states, attention_mask.bool(), input_ids, restore, sample, keep_actions,
                                        step_states)
        if step_states:
            raise ValueError("step_states are returned in masked mode only (masked=True)")
        return self._forward_removal(hidden_states, attention_mask.bool(), input_ids, restore, sample, keep_actions,
                                     segment)

    def _forward_removal(self, hidden, mask, input_ids, restore, sample, keep_actions, segment=None):
        B, n, d = hidden.shape
        length = mask.sum(1)
        # Host read-backs: the tokens of each example here, and after each reduction step (`Lengths`);
        # none per layer. Everything else (selection, budget, gathers) stays on the device.
        sizes = Lengths(length)
        if sizes.total == B * n:  # no padding: the packed tokens are the batch's rows in order, a view
            h = hidden.reshape(B * n, d)
            example = torch.arange(B, device=hidden.device).repeat_interleave(n)
            position = torch.arange(n, device=hidden.device).repeat(B)
        else:
            example, position = torch.nonzero_static(mask, size=sizes.total).unbind(1)
            h = hidden[example, position]
        counts, present = length, sizes  # tokens present in each example
        rank = ranks_within_examples(example, counts)
        out = hidden.clone() if restore else None  # padding keeps its embedding output
        steps = self.config.reduction_layers
        kept = hidden.new_zeros(B, len(steps), dtype=torch.long)
        kept_steps = mask.long() - 1
        log_prob, exits = None, None
        as_keys, packed = self.config.skipped_as_keys, self.config.execution == "packed"
        skipped_h, skipped_example, skipped_position, memory = h[:0], example[:0], position[:0], None
        segments = None  # tokens per segment, in packed order, while attention stays within segments
        if segment is not None:
            group = example * (int(segment.max()) + 1) + segment[example, position]
            segments = Lengths(torch.unique_consecutive(group, return_counts=True)[1])
        for i, layer in enumerate(self.layer):
            if i in steps:
                step = steps.index(i)
                tokens = Tokens(h, example, position, rank, counts, length)
                keep, log_prob, prediction = self._step(step, tokens, input_ids, keep_actions, sample, log_prob)
                skip = ~keep
                if restore:  # every present token's state; those kept are written again later
                    out[example, position] = h
                    exits = _record_exits(exits, prediction, skip, example, position, (B, n))
                before = sizes.total
                counts = torch.zeros_like(length).scatter_add(0, example, keep.long())
                sizes = Lengths(counts)  # the step's one read-back
                if as_keys:
                    gone = torch.nonzero_static(skip, size=before - sizes.total).squeeze(1)
                    skipped_h = torch.cat([skipped_h, h[gone]])
                    skipped_example = torch.cat([skipped_example, example[gone]])
                    skipped_position = torch.cat([skipped_position, position[gone]])
                where = torch.nonzero_static(keep, size=sizes.total).squeeze(1)  # once, for the three gathers
                h, example, position = h[where], example[where], position[where]
                kept[:, step] = counts
                kept_steps[example, position] += 1
                rank = ranks_within_examples(example, counts)
                if as_keys:  # keys and values: each example's present tokens, then its skipped ones
                    order = torch.argsort(torch.cat([example, skipped_example]), stable=True)
                    memory = (skipped_h, order, present, skipped_position)
                segments = None  # from here on the kept tokens of all segments attend to each other
            if segments is not None:
                h = self._layer_packed(i, h, segments, position=position)
            elif packed or memory is not None:
                h = self._layer_packed(i, h, sizes, memory, position)
            else:
                h = self._layer_padded(i, h, example, rank, sizes, position)
        if restore:
            out[example, position] = h
        elif B == 1:
            out = h[None]
        else:
            out = h.new_zeros(B, sizes.longest, d)
            out[example, rank] = h
        return EncoderResult(out, kept, _fraction(kept, length, hidden.dtype), log_prob, None, *(exits or (None, None)),
                             kept_steps=kept_steps)

    def _forward_graph(self, hidden, mask, input_ids, restore):
        """Removal without host read-backs (see the module's docstring). The present tokens stay packed,
        [T, d] grouped by example as in removal mode, so the projections and the feed-forward run on them
        alone; attention runs on a grid of each example's tokens (`_grid`)."""
        B, n, d = hidden.shape
        length = mask.sum(1)
        example, position = mask.nonzero(as_tuple=True)
        h, counts = hidden[example, position], length
        rank = ranks_within_examples(example, counts)
        grid = self._grid(example, rank, position, counts, hidden.dtype)
        out = hidden.clone() if restore else None
        steps = self.config.reduction_layers
        kept = []
        kept_steps = mask.long() - 1
        exits = None
        for i in range(len(self.layer)):
            if i in steps:
                tokens = Tokens(h, example, position, rank, counts, length)
                keep, _, prediction = self._select(steps.index(i), tokens, input_ids, None, False)
                if restore:
                    out = out.index_put((example, position), h)
                    exits = _record_exits(exits, prediction, ~keep, example, position, (B, n))
                counts = torch.zeros_like(length).scatter_add(0, example, keep.long())
                where = keep.nonzero().squeeze(1)
                h, example, position = h[where], example[where], position[where]
                # Not in place or accumulating: this is what the export traces.
                passed = torch.zeros_like(kept_steps).index_put((example, position), torch.ones_like(example))
                kept_steps = kept_steps + passed
                rank = ranks_within_examples(example, counts)
                grid = self._grid(example, rank, position, counts, hidden.dtype)
                kept.append(counts)
            h = self._layer_graph(i, h, grid)
        if restore:
            out = out.index_put((example, position), h)
        else:  # the kept tokens first, zeros after them
            out = h[grid.source].reshape(B, -1, d) * grid.present[..., None].to(h.dtype)
        kept = torch.stack(kept, 1) if kept else length.new_zeros(B, 0)
        return EncoderResult(out, kept, _fraction(kept, length, hidden.dtype), None, None, *(exits or (None, None)),
                             kept_steps=kept_steps)

    def _grid(self, example, rank, position, counts, dtype) -> "Grid":
        """The grid [B, m] that graph-mode attention runs on, m the most tokens any example holds: slot
        (b, r) holds example b's token of rank r."""
        slots = torch.arange(counts.max(), device=counts.device)
        present = slots[None] < counts[:, None]
        cell = example * present.shape[1] + rank
        # An empty slot takes token 0: its key is masked and its output never read.
        source = torch.zeros_like(present, dtype=torch.long).reshape(-1).scatter(
            0, cell, torch.arange(example.shape[0], device=counts.device))
        # Added to the attention scores: a float mask exports as one addition (a boolean one, as two
        # selections and a NaN check per layer).
        at = position[source].reshape(present.shape)
        bias = self.position_bias(at, at)
        bias = torch.zeros((), dtype=dtype, device=counts.device) if bias is None else bias.to(dtype)
        attention_mask = bias.masked_fill(~present[:, None, None, :], torch.finfo(dtype).min)
        return Grid(cell, source, present, attention_mask)

    def _layer_graph(self, i: int, h: torch.Tensor, grid: "Grid") -> torch.Tensor:
        """Layer i on packed tokens [T, d] in graph mode: queries, keys and values projected on the tokens
        and moved to the grid for attention, its output moved back to the tokens."""
        layer = self.layer[i]
        sa = layer.attention.self
        qkv = self.qkv[i](h) if self.qkv is not None else torch.cat([sa.query(h), sa.key(h), sa.value(h)], -1)
        heads = (sa.num_attention_heads, sa.attention_head_size)
        q, k, v = qkv[grid.source].reshape(grid.present.shape[0], -1, 3, *heads).permute(2, 0, 3, 1, 4)
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=grid.attention_mask, scale=sa.scaling)
        context = context.transpose(1, 2).reshape(-1, sa.all_head_size)[grid.cell]
        return _after_attention(layer, context, h, False)

    def _forward_masked(self, hidden, mask, input_ids, restore, sample, keep_actions, step_states=False):
        B, n, _ = hidden.shape
        length = mask.sum(1)
        present_mask = mask
        positions = torch.arange(n, device=hidden.device).expand(B, n)
        h = hidden
        steps = self.config.reduction_layers
        kept = hidden.new_zeros(B, len(steps), dtype=torch.long)
        kept_steps = mask.long() - 1
        log_prob, exits = None, None
        states = [] if step_states else None
        for i, layer in enumerate(self.layer):
            if i in steps:
                step = steps.index(i)
                if states is not None:
                    states.append(h)
                example, position = present_mask.nonzero(as_tuple=True)
                counts = present_mask.sum(1)
                tokens = Tokens(h[example, position], example, position, ranks_within_examples(example, counts),
                                counts, length)
                keep, log_prob, prediction = self._step(step, tokens, input_ids, keep_actions, sample, log_prob)
                exits = _record_exits(exits, prediction, ~keep, example, position, (B, n))
                present_mask = torch.zeros_like(present_mask)
                present_mask[example[keep], position[keep]] = True
                kept[:, step] = present_mask.sum(1)
                kept_steps += present_mask.long()
            keys = mask if self.config.skipped_as_keys else present_mask
            attn_mask = self._layer_mask(h, keys, positions)
            h = torch.where(present_mask[..., None], layer(h, attn_mask), h)  # skipped tokens keep their state
        return EncoderResult(h, kept, _fraction(kept, length, hidden.dtype), log_prob, states, *(exits or (None, None)),
                             kept_steps=kept_steps)


def _after_attention(layer: BertLayer, context: torch.Tensor, h: torch.Tensor, training: bool) -> torch.Tensor:
    """The rest of a BERT layer after self-attention (BertSelfOutput, BertIntermediate, BertOutput) as
    plain function calls on the layer's own weights: the same arithmetic with fewer module calls. At
    batch 1 with few tokens kept the calls cost about as much as the arithmetic."""
    out, inter, last = layer.attention.output, layer.intermediate, layer.output
    a = _norm(_dropout(out.dense(context), out.dropout, training) + h, out.LayerNorm)
    x = inter.intermediate_act_fn(inter.dense(a))
    return _norm(_dropout(last.dense(x), last.dropout, training) + a, last.LayerNorm)


def _dropout(x: torch.Tensor, dropout: nn.Dropout, training: bool) -> torch.Tensor:
    return F.dropout(x, dropout.p, True) if training else x


def _norm(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _record_exits(exits, prediction, leaving, example, position, shape):
    """Write the strategy's prediction for the tokens leaving at a step (`leaving`: [T] bool over the
    present tokens at `example`, `position`) into (outputs [B, n, C], exited [B, n]), made on first use;
    nothing when the strategy predicts none."""
    if prediction is None:
        return exits
    if exits is None:
        exits = (prediction.new_zeros(*shape, prediction.shape[-1]),
                 torch.zeros(shape, dtype=torch.bool, device=prediction.device))
    outputs, exited = exits
    # Written for every present token, kept where it does not leave (no boolean indexing: no read-back).
    where = example, position
    outputs[where] = torch.where(leaving[:, None], prediction.to(outputs.dtype), outputs[where])
    exited[where] = exited[where] | leaving
    return exits


def ranks_within_examples(example: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Index of each packed token within its example (tokens are grouped by example, in order; `counts`:
    [B] tokens of each example). Sizes are read from shapes, so that a traced graph keeps them."""
    if counts.shape[0] == 1 and not torch.jit.is_tracing():
        return torch.arange(example.shape[0], device=example.device)
    offsets = torch.cumsum(counts, 0) - counts
    return torch.arange(example.shape[0], device=example.device) - offsets.to(example.device)[example]


def _rank_within_example(key: torch.Tensor, tokens: Tokens) -> torch.Tensor:
    """Rank of each token by `key` (descending) among the tokens of its example."""
    tracing = torch.jit.is_tracing()  # ONNX sorts without a stable option; ties are the only difference
    by_key = torch.argsort(key, descending=True) if tracing else torch.argsort(key, descending=True, stable=True)
    if tokens.counts.shape[0] == 1 and not tracing:
        order = by_key  # one example: the order by key is the order
    else:  # grouped by example, by key within each: one sort on (example, place by key), all distinct
        place = torch.empty_like(by_key).scatter_(0, by_key, torch.arange(by_key.shape[0], device=key.device))
        order = torch.argsort(tokens.example * by_key.shape[0] + place)
    rank = torch.empty_like(order).scatter_(0, order, ranks_within_examples(tokens.example[order], tokens.counts))
    return rank


class Grid(NamedTuple):
    """Graph mode's attention grid [B, m] over packed tokens [T] (`TRBertEncoder._grid`)."""

    cell: torch.Tensor  # [T] each token's slot, b * m + r
    source: torch.Tensor  # [B * m] the token in each slot (token 0 in an empty one)
    present: torch.Tensor  # [B, m] the slots that hold a token
    attention_mask: torch.Tensor  # [B, 1, 1, m], or [B, H, m, m] with MPNet's bias: the lowest value at empty slots


class Lengths:
    """Token counts of the groups attention runs over (examples, or segments of long inputs): on the host
    (`host`: one read-back, made here), and as the cumulative offsets [G + 1] on the device that the
    variable-length attention kernel takes."""

    def __init__(self, counts: torch.Tensor):
        self.counts = counts
        self.host: list[int] = counts.tolist()
        self.total = sum(self.host)
        self.longest = max(self.host, default=0)
        self._cumulative = None

    @property
    def cumulative(self) -> torch.Tensor:
        if self._cumulative is None:
            self._cumulative = F.pad(torch.cumsum(self.counts, 0), (1, 0)).to(torch.int32)
        return self._cumulative


def _fraction(kept: torch.Tensor, length: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, steps] kept / length, at least in fp32 (a bfloat16 model's fraction of 300 / 512 would round)."""
    return kept.to(torch.promote_types(dtype, torch.float32)) / length[:, None]


def attention_path(device: torch.device, dtype: torch.dtype, dropout: float = 0.0) -> str:
    """How packed attention runs here: "varlen" (one FlashAttention call over every example: CUDA, bfloat16
    or float16, torch's `varlen_attn`, no dropout), "padded" (one SDPA call over the examples padded to
    the longest, with a mask: the other GPU cases) or "per_example" (one call per example: the CPU, where
    it is the fastest)."""
    if device.type != "cuda":
        return "per_example"
    if dtype in (torch.float16, torch.bfloat16) and dropout == 0.0 and _varlen_attn is not None:
        return "varlen"
    return "padded"


try:  # PyTorch >= 2.10; the kernel itself runs on CUDA only
    from torch.nn.attention.varlen import varlen_attn as _varlen_attn
except ImportError:  # pragma: no cover - older PyTorch
    _varlen_attn = None


def _padded_attention(q, k, v, sizes: Lengths, attended: Lengths, heads: tuple[int, int], scale: float,
                      position_bias: Callable | None = None, positions=None):
    """Packed attention as one SDPA call: queries, keys and values scattered into [G, longest, H, dh] by
    group, the padded keys masked out, the outputs gathered back to the packed order. `position_bias`
    (MPNet's, with the queries' and keys' original `positions`) is added to the scores."""
    def scatter(x, lengths, *tail):
        group = torch.repeat_interleave(torch.arange(len(lengths.host), device=x.device), lengths.counts,
                                        output_size=lengths.total)
        rank = torch.arange(lengths.total, device=x.device) - lengths.cumulative[:-1].long()[group]
        padded = x.new_zeros(len(lengths.host), lengths.longest, *tail)
        padded[group, rank] = x.reshape(-1, *tail)
        return padded, group, rank

    q4, group, rank = scatter(q, sizes, *heads)
    k4, v4 = scatter(k, attended, *heads)[0], scatter(v, attended, *heads)[0]
    q4, k4, v4 = q4.transpose(1, 2), k4.transpose(1, 2), v4.transpose(1, 2)
    mask = (torch.arange(attended.longest, device=q.device) < attended.counts[:, None])[:, None, None, :]
    if position_bias is not None:
        bias = position_bias(scatter(positions[0], sizes)[0], scatter(positions[1], attended)[0])
        mask = bias.to(q.dtype).masked_fill(~mask, torch.finfo(q.dtype).min)
    out = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=mask, scale=scale).transpose(1, 2)
    return out[group, rank].reshape(len(group), -1)
