"""CPU instructions of a Python child, counted by valgrind's callgrind, shared by the bench scripts
next to this file (they import it by name: Python puts a script's own directory first on its module
path). A count does not move with the machine's load, unlike a time."""
import os
import subprocess
import sys
import tempfile


def instructions(child, *args):
    """Instructions the Python code `child` executes, run as `python -c child ARGS… WORKDIR` (its
    last argument is a fresh directory for its files)."""
    work = tempfile.mkdtemp()
    out = os.path.join(work, "callgrind.out")
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", child,
         *[str(a) for a in args], work],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError("no totals in callgrind output")
