"""Builds a function's deploy folder: its own `main.py` and `requirements.txt` plus the shared code.

    python -m triggers.package new_data            # -> build/functions/new_data/
    python -m triggers.package --all [--out DIR]   # every function

The folder mirrors the repository (`main.py` next to `triggers/`), so the same
`from triggers.events import ...` works in the repo, in tests and on Cloud Run
functions, with no path hacks. Only the modules in `VENDORED` are copied: not
the CLI, not the other functions.
`gcloud functions deploy --source=build/functions/NAME` uploads exactly this.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

from contract.paths import PROJECT_ROOT

TRIGGERS_DIR = PROJECT_ROOT / "triggers"
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
    target.mkdir(parents=True)
    shutil.copy2(source / "main.py", target / "main.py")
    shutil.copy2(source / "requirements.txt", target / "requirements.txt")
    for relative in vendored_modules():
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / relative, target / relative)
    return target


# What every function imports: the triggers' own light packages, and the one file of paths they share.
VENDORED = ("triggers/__init__.py", "triggers/config.py", "triggers/events/*.py", "triggers/submission/*.py",
            "contract/__init__.py", "contract/paths.py")


def vendored_modules() -> list[Path]:
    """Paths relative to the project root, sorted."""
    return sorted(path.relative_to(PROJECT_ROOT) for pattern in VENDORED for path in PROJECT_ROOT.glob(pattern))


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
