"""Builds a function's deploy folder: its own `main.py` and `requirements.txt` plus the shared code.

    python -m triggers.package new_data            # -> build/functions/new_data/
    python -m triggers.package --all [--out DIR]   # every function

The folder mirrors the repository (`main.py` next to `triggers/common/`), so the
same `from triggers.common import ...` works in the repo, in tests and on Cloud
Run functions, with no path hacks. Only `triggers/__init__.py` and
`triggers/common/*.py` are vendored: not the CLI, not the other functions.
`gcloud functions deploy --source=build/functions/NAME` uploads exactly this.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

TRIGGERS_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = TRIGGERS_DIR.parent
DEFAULT_OUT = PROJECT_ROOT / "build" / "functions"


@dataclasses.dataclass(frozen=True)
class Function:
    name: str  # folder under triggers/ and deployed function name suffix
    entry_points: tuple[str, ...]


FUNCTIONS = {
    function.name: function
    for function in (
        Function("new_data", ("on_object_finalized",)),
        Function("schedule", ("on_schedule_message", "on_schedule_request")),
        Function("drift_alert", ("on_drift_log_entry",)),
    )
}


def build(name: str, out_root: Path = DEFAULT_OUT) -> Path:
    """(Re)creates `out_root/name` and returns it."""
    if name not in FUNCTIONS:
        raise ValueError(f"unknown function {name!r}: expected one of {', '.join(FUNCTIONS)}")
    source = TRIGGERS_DIR / name
    target = Path(out_root) / name
    if target.exists():
        shutil.rmtree(target)
    (target / "triggers" / "common").mkdir(parents=True)
    shutil.copy2(source / "main.py", target / "main.py")
    shutil.copy2(source / "requirements.txt", target / "requirements.txt")
    shutil.copy2(TRIGGERS_DIR / "__init__.py", target / "triggers" / "__init__.py")
    for module in sorted((TRIGGERS_DIR / "common").glob("*.py")):
        shutil.copy2(module, target / "triggers" / "common" / module.name)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m triggers.package", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"function(s) to build: {', '.join(FUNCTIONS)}")
    parser.add_argument("--all", action="store_true", help="build every function")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output root (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    names = list(FUNCTIONS) if args.all else args.names
    if not names:
        parser.error("name a function or pass --all")
    unknown = [name for name in names if name not in FUNCTIONS]
    if unknown:
        parser.error(f"unknown function(s) {', '.join(unknown)}: expected {', '.join(FUNCTIONS)}")
    for name in names:
        print(f"built {build(name, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
