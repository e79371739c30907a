"""What the command-line tests share: one thread for tiny models, and one training run through `trbert
train --stage all` on a CSV file that the eval and predict tests use."""

import io
from contextlib import redirect_stdout
from types import SimpleNamespace

import pytest
import torch
from builders import CSV_COLUMNS, synthetic, write_csv

from trbert import hardware
from trbert.cli import main

EPOCHS, BATCH, N_TRAIN, LOG_EVERY = 2, 16, 96, 2
STEPS = EPOCHS * N_TRAIN // BATCH


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A tiny model gains nothing from threads; on a busy machine, competing ones slow it 100-fold. The
    commands' --threads default (the cores this process may use) is 1 here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hardware, "available_cores", lambda: 1)
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def run(backbone, tmp_path_factory):
    """The three stages trained by the command line on a CSV file of the tiny synthetic task."""
    root = tmp_path_factory.mktemp("cli")
    train_csv = write_csv(root / "train.csv", synthetic(N_TRAIN, seed=1))
    test_csv = write_csv(root / "test.csv", synthetic(40, seed=2))
    out = root / "run"
    argv = ["train", "--stage", "all", "--out", str(out), "--backbone", backbone, "--data", str(train_csv), *CSV_COLUMNS,
            "--epochs", str(EPOCHS), "--lr", "3e-3", "--batch-size", str(BATCH), "--samples", "2",
            "--reduction-layers", "0", "--logging-steps", str(LOG_EVERY), "--save-steps", "4", "--no-progress",
            "--threads", "1"]
    stdout = io.StringIO()
    with redirect_stdout(stdout):
        status = main(argv)
    return SimpleNamespace(root=root, out=out, argv=argv, status=status, stdout=stdout.getvalue(), test_csv=test_csv,
                           epochs=EPOCHS, steps=STEPS, log_every=LOG_EVERY)
