"""sandbox.py: a candidate runs in a separate, limited process, and its outcome is what it did."""

import os
import resource
import socket
from pathlib import Path

import pytest

from sandbox import Limits, network_isolation, run_program

FAST = Limits(timeout_s=2.0)


def unshare_usable() -> bool:
    return bool(network_isolation()[0])


def test_passing_candidate_passes():
    result = run_program("def add(a, b):\n    return a + b\n\nassert add(1, 2) == 3\n", FAST)
    assert result.outcome == "passed", result.stderr


def test_failing_assert_fails():
    result = run_program("def add(a, b):\n    return a - b\n\nassert add(1, 2) == 3\n", FAST)
    assert result.outcome == "failed"
    assert "AssertionError" in result.stderr


def test_other_exceptions_are_errors_and_early_exits_do_not_pass():
    assert run_program("assert undefined_name(1) == 1\n", FAST).outcome == "error"
    assert run_program("import sys\nsys.exit(0)\nassert False\n", FAST).outcome == "error"
    assert run_program("import os\nos._exit(0)\nassert False\n", FAST).outcome == "error"


def test_infinite_loop_times_out_and_is_killed():
    result = run_program("while True:\n    pass\n", Limits(timeout_s=1.0))
    assert result.outcome == "timeout"
    assert result.seconds < 4
    with pytest.raises(ProcessLookupError):  # the whole process group is gone
        os.killpg(result.pid, 0)


def test_memory_hog_does_not_pass_and_leaves_the_parent_alone():
    limits_before = resource.getrlimit(resource.RLIMIT_AS)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run_program("block = bytearray(2 * 1024 ** 3)\nblock[-1] = 1\nassert True\n", FAST)
    assert result.outcome in ("error", "timeout")
    assert "MemoryError" in result.stderr or result.outcome == "timeout"
    assert resource.getrlimit(resource.RLIMIT_AS) == limits_before, "the limits are the child's only"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 100 * 1024  # KiB
    assert run_program("assert 1 + 1 == 2\n", FAST).outcome == "passed", "the parent still works"


def test_files_are_written_only_inside_the_temporary_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    program = (
        "import os\nopen('probe.txt', 'w').write('x')\nprint(os.getcwd())\nassert os.listdir('.') == ['probe.txt']\n"
    )
    result = run_program(program, FAST)
    assert result.outcome == "passed", result.stderr
    child_cwd = Path(result.stdout.splitlines()[0])
    assert child_cwd.resolve() != tmp_path.resolve()
    assert not (tmp_path / "probe.txt").exists()
    assert not child_cwd.exists(), "the temporary directory is removed afterwards"


@pytest.mark.skipif(
    not unshare_usable(),
    reason="`unshare --net --map-root-user` is not usable on this machine, "
    "so candidates run with network access (evaluate.py records a warning in its results)",
)
def test_network_is_unreachable():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        program = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n"
        result = run_program(program, FAST)
        assert result.outcome == "error"
        assert result.network_isolated
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever connected
