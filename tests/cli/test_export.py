"""`trbert export`: the CLI run's TR model as an ONNX folder that `trbert predict` and `trbert eval` run,
with the PyTorch model's answers; clear errors for plain models and wrong uses."""

import json

from builders import CSV_COLUMNS, run_cli


def test_export_then_predict_and_eval_give_the_pytorch_answers(run, tmp_path, capsys):
    out = tmp_path / "exported"
    status, stdout, err = run_cli(["export", "--model", run.out / "joint", "--out", out], capsys)
    assert status == 0, err
    assert f"wrote {out}: model.onnx (fp32, checked against PyTorch)" in stdout
    texts = ["w1 red w2 w7 w8", "w3 w4", "blue w5 w6 w9 w10 w11 w12"]
    answers = {}
    for model in (run.out / "joint", out):
        status, stdout, _ = run_cli(["predict", "--model", model, *texts, "--json"], capsys)
        assert status == 0
        answers[model] = [json.loads(line) for line in stdout.splitlines()]
    torch_rows, onnx_rows = answers.values()
    for a, b in zip(torch_rows, onnx_rows):
        assert a["label"] == b["label"] and a["kept_tokens"] == b["kept_tokens"] and a["kept_tokens"]
        assert all(abs(a["probabilities"][k] - b["probabilities"][k]) < 1e-4 for k in a["probabilities"])

    report = tmp_path / "eval.json"
    status, stdout, err = run_cli(["eval", "--model", out, "--full-model", run.out / "finetune", "--data", run.test_csv,
                                   *CSV_COLUMNS, "--timing-repeats", "0", "--json", report, "--no-progress"], capsys)
    assert status == 0, err
    tr = json.loads(report.read_text())["records"][0]
    status, _, _ = run_cli(["eval", "--model", run.out / "joint", "--full-model", run.out / "finetune", "--data",
                            run.test_csv, *CSV_COLUMNS, "--timing-repeats", "0", "--json", tmp_path / "t.json",
                            "--no-progress"], capsys)
    same = json.loads((tmp_path / "t.json").read_text())["records"][0]
    assert tr["score"] == same["score"] and tr["kept_fraction"] == same["kept_fraction"]
    assert tr["flops_speedup"] == same["flops_speedup"]


def test_export_errors_are_one_line(run, tmp_path, capsys):
    cases = [
        (["export", "--model", run.out / "finetune", "--out", tmp_path / "x"], "is a plain 'bert' model"),
        (["eval", "--model", None, "--data", run.test_csv, *CSV_COLUMNS], "give --full-model"),
        (["eval", "--model", None, "--full-model", run.out / "finetune", "--data", run.test_csv, *CSV_COLUMNS,
          "--dtype", "bfloat16"], "leave out --dtype"),
        (["predict", "--model", tmp_path / "damaged", "w1 w2"], "not a readable ONNX model"),
    ]
    exported = tmp_path / "e"
    assert run_cli(["export", "--model", run.out / "joint", "--out", exported], capsys)[0] == 0
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name in ("config.json", "trbert-onnx.json", "tokenizer.json", "tokenizer_config.json"):
        (damaged / name).write_bytes((exported / name).read_bytes())
    (damaged / "model.onnx").write_bytes((exported / "model.onnx").read_bytes()[:1000])
    for argv, message in cases:
        argv = [exported if a is None else a for a in argv]
        status, _, err = run_cli(argv, capsys)
        assert status == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
