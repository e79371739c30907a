"""How long the command line and `import trbert` take to start: each command run as a fresh process,
N times in turn, the median (min-max) wall seconds printed.

    .venv/bin/python scripts/start_times.py [--runs 5] [--model runs/bbc-quick/alpha-1/joint]

With --model it also times `trbert predict` on five texts with that model folder.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TEXTS = ["Shares rose after the bank cut rates.", "The striker scored twice in the final.",
         "The minister promised a vote on the bill.", "A new phone with a folding screen.", "The film won three awards."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each command (default: 5)")
    parser.add_argument("--model", help="a model folder, to time `trbert predict` on five texts")
    args = parser.parse_args()
    python = sys.executable
    trbert = str(Path(python).with_name("trbert"))
    commands = {
        "trbert --help": [trbert, "--help"],
        "trbert train --help": [trbert, "train", "--help"],
        "python -c 'import trbert'": [python, "-c", "import trbert"],
        "python -c 'import torch, transformers'": [python, "-c", "import torch, transformers"],
    }
    if args.model:
        commands["trbert predict (5 texts)"] = [trbert, "predict", "--model", args.model, *TEXTS]
    times = {name: [] for name in commands}
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    for _ in range(args.runs + 1):  # the first round warms the file cache and is not counted
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        counted = values[1:]
        print(f"{name:<40} {statistics.median(counted):6.2f} s  ({min(counted):.2f}-{max(counted):.2f})")


if __name__ == "__main__":
    main()
