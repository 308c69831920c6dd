"""benchmarks/gpu_check.py's own verdicts, on the CPU: a wrong result, a command that fails or hangs and a failing
test of tests/test_gpu.py each fail their row and the exit status; the rows that ended are kept as they end."""

import importlib.util
import os
import time

import pytest

from conftest import ROOT


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def gpu_check(monkeypatch):
    module = load_gpu_check()
    monkeypatch.setattr(module, "gpu_tests", lambda device, workdir, timeout: [("pytest test_on_the_device", True, 0.5, "overlap 0.99")])
    return module


def answer_is(expected: str):
    def verify(run_dir, output):
        answer = output.split()[-1]
        assert answer == expected, f"answer {answer}, expected {expected}"
        return f"answer {answer}"

    return verify


def checks(*names_and_code):
    """cli_checks' shape: (name, label, arguments of python, verify) for `python -c CODE` commands."""
    return lambda device, workdir: [(name, f"the {name} check", ["-c", code], answer_is("42")) for name, code in names_and_code]


def table_rows(markdown: str) -> dict:
    rows = [line.split(" | ") for line in markdown.splitlines() if line.startswith("| the") or line.startswith("| pytest")]
    return {row[0].removeprefix("| "): (row[1], row[3].removesuffix(" |")) for row in rows}


def test_a_wrong_result_a_failing_command_and_a_hang_fail_their_rows_and_the_check(gpu_check, monkeypatch, tmp_path, capsys):
    orphan = tmp_path / "orphan.pid"  # a process the hung command started, as DDP starts its ranks
    sleeper = f"import os, time; open({str(orphan)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    hang = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {sleeper!r}]); time.sleep(60)"
    cli = checks(
        ("right", "print('answer 42')"), ("wrong", "print('answer 41')"), ("crash", "raise SystemExit('bad news')"), ("hang", hang)
    )
    monkeypatch.setattr(gpu_check, "cli_checks", cli)
    start = time.perf_counter()
    assert gpu_check.main(["--device", "cpu", "--timeout", "3", "--markdown", str(tmp_path / "gpu.md")]) == 1
    assert time.perf_counter() - start < 30  # the hang was cut at its timeout
    rows = table_rows((tmp_path / "gpu.md").read_text())
    assert rows == {
        "pytest test_on_the_device": ("pass", "overlap 0.99"),
        "the right check": ("pass", "answer 42"),
        "the wrong check": ("FAIL", "AssertionError: answer 41, expected 42"),
        "the crash check": ("FAIL", "bad news"),
        "the hang check": ("FAIL", "timed out after 3 s (killed)"),
    }
    out, err = capsys.readouterr()
    assert "gpu-check: 2 passed, 3 failed, 0 skipped" in out and "FAIL" in out  # the table, and its verdict
    assert [line.split(":")[0] for line in err.splitlines()[2:]] == [
        f"gpu-check {i}/4 {name}" for i, name in enumerate(["right", "wrong", "crash", "hang"], 1)
    ]
    pid = int(orphan.read_text())
    for _ in range(50):  # the hung command's whole process group was killed, not only the command
        state = (open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0]) if os.path.exists(f"/proc/{pid}") else "gone"
        if state in ("gone", "Z", "X"):
            break
        time.sleep(0.1)
    assert state in ("gone", "Z", "X"), f"process {pid} started by the hung command is still {state}"


def test_only_runs_the_named_checks_and_the_runs_they_read(gpu_check, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(
        gpu_check, "cli_checks", checks(("first", "print('answer 42')"), ("second", "print('answer 42')"), ("third", "print(1)"))
    )
    monkeypatch.setattr(gpu_check, "NEEDS", {"second": "first"})
    assert gpu_check.main(["--device", "cpu", "--only", "second", "--markdown", str(tmp_path / "gpu.md")]) == 0
    assert list(table_rows((tmp_path / "gpu.md").read_text())) == ["the first check", "the second check"]  # no pytest, no third
    with pytest.raises(SystemExit) as exit:
        gpu_check.main(["--device", "cpu", "--only", "second,fourth"])
    assert exit.value.code == 2 and "--only fourth: no such check; the checks are pytest,first,second,third" in capsys.readouterr().err


def test_the_device_tests_give_one_row_each_with_what_they_measured(tmp_path):
    gpu_check, tests = load_gpu_check(), tmp_path / "test_device.py"
    tests.write_text(
        "import pytest\n"
        "pytestmark = pytest.mark.gpu\n"
        "def test_measures(record_property):\n    record_property('measured', 'overlap 0.999')\n"
        "def test_wrong(record_property):\n    record_property('measured', 'overlap 0.4')\n    assert 0.4 >= 0.99, 'overlap 0.4'\n"
        "def test_skipped():\n    pytest.skip('needs something')\n"
    )
    rows = {name: (gpu_check.verdict(ok, detail), detail) for name, ok, _, detail in gpu_check.gpu_tests("cpu", tmp_path, tests)}
    assert rows["pytest test_measures"] == ("pass", "overlap 0.999")
    assert rows["pytest test_wrong"][0] == "FAIL" and rows["pytest test_wrong"][1].startswith("overlap 0.4: AssertionError: overlap 0.4")
    assert rows["pytest test_skipped"] == ("skip", "skipped")


def test_the_names_the_docs_give_for_only_are_the_checks(tmp_path):
    names = ["pytest", *(name for name, *_ in load_gpu_check().cli_checks("cpu", tmp_path))]
    docs = " ".join((ROOT / "docs" / "gpus_and_clusters.md").read_text().split())
    assert f"as the progress lines show them: {', '.join(names)}." in docs
