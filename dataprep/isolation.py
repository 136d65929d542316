"""Run a step's heavy work in a child process that exits without interpreter teardown.

Why: after any tensorflow-transform Beam run, CPython's teardown frees a protobuf
(upb) message after its module is gone and the process dies with SIGSEGV (exit
139), though all work is done (README: "Why not the tfx package"; reproduced in
tests/pipeline/test_isolation.py). A pipeline step must neither
fail because of that nor hide a real failure behind a workaround. So the work
runs here, in a child that reports its result through a file and then leaves
with os._exit: success is "result file written and exit 0"; anything else (an
exception, a crash before the result, a signal) is a failure that names itself.
"""

from __future__ import annotations

import collections
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

_STDERR_TAIL_LINES = 25


class IsolatedStepError(RuntimeError):
    """The isolated work failed; the message carries the child's own error."""


def run_isolated(target: str, **kwargs) -> dict:
    """Calls `module:function(**kwargs)` in a child Python; returns its JSON-able result."""
    with tempfile.TemporaryDirectory(prefix="isolated-") as scratch:
        result_file = Path(scratch) / "result.json"
        request = json.dumps({"target": target, "kwargs": kwargs, "result_file": str(result_file)})
        child = subprocess.Popen([sys.executable, "-m", "dataprep.isolation", request],
                                 stdout=None, stderr=subprocess.PIPE, text=True)
        tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL_LINES)

        def relay() -> None:  # show the child's log live, keep its end for the error message
            for line in child.stderr:
                sys.stderr.write(line)
                tail.append(line)

        relay_thread = threading.Thread(target=relay, daemon=True)
        relay_thread.start()
        code = child.wait()
        relay_thread.join()
        if code == 0 and result_file.exists():
            return json.loads(result_file.read_text())
        if code < 0:
            cause = f"killed by {signal.Signals(-code).name} before it finished"
        elif code == 0:
            cause = "exited without a result"
        else:
            cause = f"failed with exit code {code}"
        raise IsolatedStepError(f"{target} {cause}:\n{''.join(tail)}")


def _child_main(request_json: str) -> None:
    request = json.loads(request_json)
    sys.argv = sys.argv[:1]  # Beam parses sys.argv as pipeline options: the request is not one
    module_name, function_name = request["target"].split(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
        result = function(**request["kwargs"])
        Path(request["result_file"]).write_text(json.dumps(result))
        code = 0
    except BaseException:  # report every failure, then leave without teardown
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _child_main(sys.argv[1])
