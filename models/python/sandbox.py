"""Runs a candidate program in a separate, limited process, and says how it ended.

What it guards against (a weak model's accidents, not an adversary) and how: models/python/README.md,
"The sandbox". `parses` is the check before anything runs.
"""

from __future__ import annotations

import ast
import functools
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):  # ValueError: null bytes
        return False
    return True


# Runs in the child: limits itself, runs the program, reports how it ended through its exit code.
BOOTSTRAP = r"""
import resource, sys, traceback
program, nonce, cpu, memory, fsize = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
source = open(program, encoding="utf-8").read()
del sys.argv[1:]
try:
    exec(compile(source, "candidate.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
except AssertionError:
    traceback.print_exc()
    sys.exit(1)
except BaseException:
    traceback.print_exc()
    sys.exit(2)
print(nonce, flush=True)
"""

EXIT_FAILED, EXIT_ERROR = 1, 2
OUTCOMES = ("passed", "failed", "timeout", "error", "syntax_error")


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 5.0  # wall clock, enforced by the parent
    memory_bytes: int = 512 * 2**20  # RLIMIT_AS
    file_bytes: int = 4 * 2**20  # RLIMIT_FSIZE (stdout and stderr files included)

    @property
    def cpu_s(self) -> int:
        return math.ceil(self.timeout_s) + 1


@dataclass
class Execution:
    outcome: str
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    pid: int
    network_isolated: bool


@functools.cache
def network_isolation() -> tuple[list[str], str | None]:
    """(prefix that runs a command without network, warning). Checked once per process."""
    prefix = ["unshare", "--net", "--map-root-user"]
    try:
        done = subprocess.run([*prefix, sys.executable, "-I", "-c", "pass"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return [], f"unshare unusable ({error}); candidates run WITH network access"
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip()
        return [], f"unshare unusable ({reason}); candidates run WITH network access"
    return prefix, None


def _tail(path: Path, limit: int = 2000) -> str:
    data = path.read_bytes() if path.exists() else b""
    return data[-limit:].decode(errors="replace")


def run_program(source: str, limits: Limits | None = None, isolate_network: bool = True) -> Execution:
    """Runs `source` in a separate, limited process (models/python/README.md, "The sandbox")."""
    limits = limits or Limits()
    prefix, _ = network_isolation() if isolate_network else ([], None)
    nonce = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="sprout-eval-") as root:
        root_path = Path(root)
        work = root_path / "work"  # the candidate's cwd: fresh and empty
        work.mkdir()
        program = root_path / "candidate.py"
        program.write_text(source, encoding="utf-8")
        stdout_path, stderr_path = root_path / "stdout", root_path / "stderr"
        command = [
            *prefix,
            sys.executable,
            "-I",
            "-c",
            BOOTSTRAP,
            str(program),
            nonce,
            str(limits.cpu_s),
            str(limits.memory_bytes),
            str(limits.file_bytes),
        ]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(work), "TMPDIR": str(work)}
        started = time.monotonic()
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            process = subprocess.Popen(
                command, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
            )
            try:
                returncode: int | None = process.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                returncode = None
            finally:
                _kill_group(process.pid)  # also any children it left behind
                process.wait()
        seconds = time.monotonic() - started
        stdout, stderr = _tail(stdout_path), _tail(stderr_path)
    return Execution(
        _outcome(returncode, stdout, nonce), returncode, stdout, stderr, seconds, process.pid, bool(prefix)
    )


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _outcome(returncode: int | None, stdout: str, nonce: str) -> str:
    if returncode is None or returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return "timeout"  # wall clock (parent) or CPU seconds (soft limit: SIGXCPU, hard: SIGKILL)
    if returncode == 0 and stdout.rstrip().endswith(nonce):
        return "passed"
    if returncode == EXIT_FAILED:
        return "failed"
    return "error"
