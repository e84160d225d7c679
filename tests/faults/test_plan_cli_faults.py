"""`longctx plan` bad inputs: each is one line on stderr, exit 2, nothing written, and --out is checked before solving."""
from __future__ import annotations

import pytest

from longctx.scheduler import cli


@pytest.fixture
def solver_calls(monkeypatch) -> list:
    """Records every call of the planner (a spy: the real planner still runs)."""
    calls = []
    real = cli.plan_step

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(cli, "plan_step", spy)
    return calls


def _lengths_file(tmp_path, content: bytes):
    path = tmp_path / "lengths.txt"
    path.write_bytes(content)
    return path


CASES = {
    "length above int64": (b"100\n9223372036854775808\n", [], "line 2: 9223372036854775808 is above the largest"),
    "non-UTF-8 file": (b"100\n\xff\xfe200\n", [], "is not UTF-8 text (byte 0xff at offset 4)"),
    "underscore digits": (b"1_000\n", [], "line 1: '1_000' is not a whole number"),
    "plus sign": (b"+50\n", [], "line 1: '+50' is not a whole number"),
    "non-ASCII digits": ("٣٤\n".encode(), [], "line 1: '٣٤' is not a whole number"),
    "zero length": (b"0\n", [], "line 1: 0 must be at least 1"),
    "memory inf": (b"100\n", ["--memory-gb", "inf"], "argument --memory-gb: 'inf' is not finite"),
    "memory nan": (b"100\n", ["--memory-gb", "nan"], "argument --memory-gb: 'nan' is not finite"),
    "time limit -inf": (b"100\n", ["--time-limit=-inf"], "argument --time-limit: '-inf' is not finite"),
    "ranks 1_000": (b"100\n", ["--ranks", "1_000"], "argument --ranks: '1_000' is not a whole number"),
    "ranks +8": (b"100\n", ["--ranks", "+8"], "argument --ranks: '+8' is not a whole number"),
}


def _exit_code(argv: list[str]) -> int:
    """`longctx plan argv`'s exit code (argparse errors exit via SystemExit)."""
    try:
        return cli.plan_main(argv)
    except SystemExit as exiting:
        return exiting.code


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, solver_calls, name):
    content, extra, message = CASES[name]
    out = tmp_path / "plan.json"
    code = _exit_code(["--lengths", str(_lengths_file(tmp_path, content)), "--ranks", "8", "--method", "greedy",
                       "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert message in err
    assert not out.exists() and solver_calls == []


def _run(tmp_path, capsys, lengths: str, out: str) -> tuple[int, str]:
    code = cli.plan_main(["--lengths", lengths, "--ranks", "8", "--method", "greedy", "--out", out])
    return code, capsys.readouterr().err


def test_a_directory_given_as_lengths_says_so(tmp_path, capsys, solver_calls):
    code, err = _run(tmp_path, capsys, str(tmp_path), str(tmp_path / "plan.json"))
    assert code == 2 and f"lengths file '{tmp_path}' is a directory" in err and "does not exist" not in err


def test_out_is_checked_before_solving(tmp_path, capsys, solver_calls):
    lengths = str(_lengths_file(tmp_path, b"100\n200\n"))
    (tmp_path / "afile").write_text("")
    for out, message in ((str(tmp_path), "is a directory; give a file path"),
                         (str(tmp_path / "afile" / "plan.json"), "is a file, not a directory"),
                         ("/proc/longctx-plan.json", "cannot write in '/proc'")):
        code, err = _run(tmp_path, capsys, lengths, out)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert solver_calls == []
    code, err = _run(tmp_path, capsys, lengths, str(tmp_path / "new" / "plan.json"))
    assert code == 0 and len(solver_calls) == 1 and (tmp_path / "new" / "plan.json").is_file(), err


@pytest.mark.parametrize("option", ["--cluster", "--cost-profile"])
@pytest.mark.parametrize("content, message", [
    (b"{ this is: [not yaml", "is not valid YAML: while parsing a flow sequence"),
    (b"ranks: \xff\n", "is not UTF-8 text (byte 0xff at offset 7)"),
    (None, "is a directory; give a YAML or JSON file"),
])
def test_bad_cluster_and_cost_profile_files_are_one_line_exit_2(tmp_path, capsys, solver_calls, option, content,
                                                                message):
    path = tmp_path / "input.yaml"
    path.mkdir() if content is None else path.write_bytes(content)
    code = _exit_code(["--lengths", str(_lengths_file(tmp_path, b"100\n")), option, str(path), "--out",
                       str(tmp_path / "plan.json")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert solver_calls == []
