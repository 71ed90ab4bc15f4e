"""Run a command and write its exit status and peak RSS as JSON (stdlib only).

    python benchmarks/sheeprl/_launch.py RESULT.json CMD [ARGS ...]

Why a launcher: Linux keeps a process's peak RSS across fork + exec, so a child forked by
the comparison (which holds a 3M-parameter model by then) would report the parent's peak as
its own. Forked from this small fresh interpreter instead, the child's `ru_maxrss` (from
wait4) is its own. SIGTERM sent to the process group stops the child; this launcher
ignores it (with a handler, which exec resets in the child) and still writes the result.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

result_path, cmd = sys.argv[1], sys.argv[2:]
signal.signal(signal.SIGTERM, lambda *_: None)
proc = subprocess.Popen(cmd)
while True:
    try:
        _, status, usage = os.wait4(proc.pid, 0)
        break
    except InterruptedError:
        continue
proc.returncode = os.waitstatus_to_exitcode(status)
with open(result_path, "w") as f:
    json.dump({"returncode": proc.returncode, "maxrss_kb": usage.ru_maxrss,
               "user_s": usage.ru_utime, "sys_s": usage.ru_stime}, f)
sys.exit(0)
