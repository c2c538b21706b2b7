"""The benchmarks' shared helpers (bench/_common.py): scratch folders, clocks, the JSON line."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "bench"))
import _common  # noqa: E402


def test_scratch_removes_only_a_temporary_folder(tmp_path):
    with _common.scratch(None, prefix="bench_test_") as path:
        assert os.path.isdir(path) and os.path.basename(path).startswith("bench_test_")
    assert not os.path.exists(path)
    kept = str(tmp_path / "kept")
    with _common.scratch(kept, prefix="unused_") as path:
        assert path == kept
        os.makedirs(path)
    assert os.path.isdir(kept)


def test_clock_and_best_time():
    with _common.Clock() as clock:
        sum(i * i for i in range(100_000))
    assert clock.wall > 0 and clock.cpu > 0 and clock.children_cpu >= 0
    calls = []
    seconds, out = _common.best_time(lambda: calls.append(1) or len(calls), repeats=3)
    assert out == 3 and len(calls) == 3 and 0 <= seconds < 1


def test_print_result_is_one_json_line(capsys):
    _common.print_result({"ratio": 0.9, "a": 1}, sort_keys=True)
    (line,) = capsys.readouterr().out.splitlines()
    assert line == '{"a": 1, "ratio": 0.9}' and json.loads(line)["ratio"] == 0.9


def test_run_rejects_positional_arguments(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench.py", "stray"])
    with pytest.raises(SystemExit) as err:
        _common.run(lambda: pytest.fail("main must not run"))
    assert err.value.code == 1
