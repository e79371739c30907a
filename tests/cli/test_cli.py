"""The command line's entry point: the commands it assembles, the examples their help gives, usage errors,
and `python -m trbert`."""

import shlex
import subprocess
import sys

import pytest

import trbert
from trbert import hardware
from trbert.cli import COMMANDS, build_parser, main


def help_text(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def examples(help_output: str) -> list[list[str]]:
    """The command lines under a help text's "examples:" heading, as arguments after `trbert`."""
    lines = help_output.split("examples:\n", 1)[1].splitlines() if "examples:\n" in help_output else []
    commands = []
    for line in lines:
        words = shlex.split(line, comments=True)
        if "trbert" in words:  # also `torchrun ... -m trbert ...`
            commands.append(words[words.index("trbert") + 1:])
    return commands


MINIMAL = {"run": [], "train": ["--stage", "all", "--out", "x"], "eval": ["--model", "x"], "predict": ["--model", "x"],
           "export": ["--model", "x", "--out", "y"], "speed": [], "wnut": [], "long": [], "bench": [], "attack": [],
           "backbone": ["all-mpnet-base-v2"]}


def test_every_command_is_assembled_with_its_own_handler():
    assert [command.__name__.rsplit(".", 1)[1] for command in COMMANDS] == list(MINIMAL)
    for command, (name, options) in zip(COMMANDS, MINIMAL.items()):
        args = build_parser().parse_args([name, *options])
        assert args.command == name and args.handler.__module__ == command.__name__  # parser and handler together


@pytest.mark.parametrize("command", list(MINIMAL))
def test_every_example_in_the_help_parses_to_its_command(command, capsys):
    found = examples(help_text([command, "--help"], capsys))
    assert found, f"trbert {command} --help gives no examples"
    for argv in found:
        args = build_parser().parse_args(argv)
        assert args.command == command and callable(args.handler), argv


def test_speed_defaults_write_the_results_page():
    from trbert.benchmarks import speed

    args = build_parser().parse_args(["speed"])
    assert (args.out_json, args.results_md, args.batch_sizes, args.threads, args.device, args.dtype) == \
        (None, "docs/RESULTS.md", [1, 32], hardware.available_cores(), "cpu", "float32")
    assert speed.default_json(args.device, args.dtype) == "docs/results/speed_minilm.json"
    quick = build_parser().parse_args(["speed", "--quick", "--lengths", "64", "32", "--seed", "3"])
    assert quick.quick and quick.lengths == [64, 32] and quick.seed == 3


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "trbert", "--version"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"trbert {trbert.__version__}"


def test_bad_arguments_exit_with_usage_error(capsys):
    for argv in [[], ["speed", "--lengths", "4096"], ["speed", "--repeats", "0"],
                 ["train", "--stage", "finetune", "--out", "x", "--attention-dropout", "1"]]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    capsys.readouterr()


def test_attack_refuses_bad_counts_and_a_bad_wordnet_before_it_starts(tmp_path, capsys):
    assert main(["attack", "--examples", "0"]) == 2
    assert "--examples 0: give at least one text" in capsys.readouterr().err
    assert main(["attack", "--wordnet", str(tmp_path / "absent.tar.gz")]) == 2
    assert "absent.tar.gz: no such file or folder" in capsys.readouterr().err
    assert main(["attack", "--wordnet", str(tmp_path)]) == 2  # a folder without the dictionary
    assert "not a WordNet dictionary folder" in capsys.readouterr().err


def test_training_precision_options_reach_the_stage_settings():
    from trbert.cli.train import stage_settings

    args = build_parser().parse_args(["train", "--stage", "joint", "--out", "x", "--bf16", "--attention-dropout", "0"])
    settings = stage_settings(args, "joint", 64)
    assert settings.bf16 is True and settings.attention_dropout == 0.0
    args = build_parser().parse_args(["train", "--stage", "joint", "--out", "x"])
    settings = stage_settings(args, "joint", 64)
    assert settings.bf16 is False and settings.attention_dropout is None  # the checkpoint's own dropout


@pytest.mark.parametrize("command", list(MINIMAL))
def test_every_command_takes_threads_defaulting_to_the_cores_it_may_use(command, monkeypatch):
    monkeypatch.setattr(hardware, "available_cores", lambda: 3)
    assert build_parser().parse_args([command, *MINIMAL[command]]).threads == 3
    assert build_parser().parse_args([command, *MINIMAL[command], "--threads", "1"]).threads == 1


def test_the_threads_are_set_before_the_command_runs(monkeypatch):
    import torch

    from trbert.cli import wnut

    monkeypatch.setattr(wnut, "run_wnut", lambda args: torch.get_num_threads())  # what the command would see
    before = torch.get_num_threads()
    try:
        assert main(["wnut", "--threads", "1"]) == 1
        assert main(["wnut", "--threads", "2"]) == 2
    finally:
        torch.set_num_threads(before)
