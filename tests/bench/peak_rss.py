"""Run a script as __main__ and, when it exits, write its own peak RSS in kB (VmHWM) to the file named first.

    python -m tests.bench.peak_rss OUT_FILE manage.py export_labels ...

Why not `os.wait4`'s `ru_maxrss`: Linux carries a parent's high-water mark into a forked child across exec, so a child
of the benchmark process reports at least the parent's RSS at fork time (a 13 MB child of a 400 MB parent reports
400 MB). VmHWM belongs to the memory map that exec made new, so it is the child's own peak.
"""

from __future__ import annotations

import atexit
import runpy
import sys
from pathlib import Path


def _vm_hwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    out, script, *args = sys.argv[1:]
    atexit.register(lambda: Path(out).write_text(str(_vm_hwm_kb())))
    sys.argv = [script, *args]
    sys.path.insert(0, str(Path(script).resolve().parent))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()


def peak_mb(path: Path) -> float:
    """What a run under this module wrote, in MB."""
    return int(path.read_text()) / 1024
