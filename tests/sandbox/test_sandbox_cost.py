"""Each run's cost as the kernel counts it, at every isolation level: CPU and peak memory.

Why at every level: the worker is a grandchild under bubblewrap and a plain child otherwise,
and the kernel's peak (``VmHWM``) is reset through a file the server may or may not be let
write; the figures must hold either way. The code tries what a sampling watchdog misses: memory
allocated and freed between two looks, and CPU burned by a child that has already exited.
"""

from __future__ import annotations

from sandbox import Sandbox

SPIKE = "block = b'x' * (150 << 20)\ndel block\nprint('freed')"
CHILD = (
    "import subprocess, sys, time\n"
    "start = time.monotonic()\n"
    "subprocess.run([sys.executable, '-c', 'import time\\nend = time.process_time() + 0.4\\n"
    "while time.process_time() < end: pass'], check=True)\n"
    "print('child done')"
)


def test_memory_freed_within_the_run_still_counts_as_its_peak(sb: Sandbox) -> None:
    spike = sb.run(SPIKE)
    assert spike.stdout == "freed\n", spike
    assert spike.peak_memory_mb > 150, spike.peak_memory_mb
    quiet = sb.run("print(1)")
    assert quiet.peak_memory_mb < 100, quiet.peak_memory_mb  # its own peak, not the run before's


def test_cpu_of_a_child_that_already_exited_is_counted(sb: Sandbox) -> None:
    result = sb.run(CHILD)
    assert result.stdout == "child done\n", result
    assert result.cpu_ms >= 350, result.cpu_ms  # the child's 0.4 s, measured after it was reaped
    assert result.cpu_ms <= result.duration_s * 1000 * 2 + 20  # at most both cores all along
