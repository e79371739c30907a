"""Several threads calling one model at once get what sequential calls get: a forward pass mutates no
shared state (a server may share one model between request threads)."""

from concurrent.futures import ThreadPoolExecutor

import torch
from builders import reducing_model, tiny_batch

import trbert


def test_concurrent_calls_equal_sequential_ones():
    model = reducing_model(trbert.TRBertForSequenceClassification)
    batches = [tiny_batch(lengths, seed=seed) for seed, lengths in
               enumerate([[20, 9, 31], [3, 14], [31], [12, 12, 12, 7], [25, 4]] * 4)]

    def call(batch):
        ids, mask = batch
        with torch.inference_mode():
            out = model(input_ids=ids, attention_mask=mask)
        return out.logits, out.kept_lengths

    sequential = [call(b) for b in batches]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(call, batches))
    for (logits, kept), (logits_c, kept_c) in zip(sequential, concurrent):
        assert torch.equal(kept, kept_c)
        torch.testing.assert_close(logits_c, logits, atol=1e-6, rtol=0)
    assert any((kept[:, -1] < kept[:, 0]).any() for _, kept in sequential)  # tokens were removed
