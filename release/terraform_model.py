"""terraform/ as data: every .tf file parsed by python-hcl2, and the tables the platform declares once.

No terraform binary installs here, so nothing is planned: the tests read what the files declare.
python-hcl2 keeps string literals quoted (`"\\"x\\""`) and expressions as `${...}` text; `literal`
undoes the quoting.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import hcl2

from contract.paths import PROJECT_ROOT

TERRAFORM_DIR = PROJECT_ROOT / "terraform"
PLATFORM_DIR = TERRAFORM_DIR / "modules" / "platform"
ENVIRONMENTS = ("dev", "staging", "prod")


def literal(value: Any) -> Any:
    """A parsed value with its string literals unquoted; expressions (`${...}`) stay as text."""
    if isinstance(value, str):
        return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if isinstance(value, list):
        return [literal(item) for item in value]
    if isinstance(value, dict):
        return {literal(key): literal(item) for key, item in value.items() if key != "__is_block__"}
    return value


@dataclasses.dataclass(frozen=True)
class Resource:
    type: str
    name: str
    body: dict
    file: Path


@dataclasses.dataclass(frozen=True)
class Terraform:
    files: dict[Path, dict]  # every .tf file -> its parsed blocks

    @classmethod
    def load(cls, root: Path = TERRAFORM_DIR) -> Terraform:
        files = {}
        for path in sorted(root.rglob("*.tf")):
            if ".terraform" in path.parts:
                continue
            with path.open() as handle:
                try:
                    files[path] = hcl2.load(handle)
                except Exception as error:  # the parser's own errors are of several types
                    raise AssertionError(f"{path.relative_to(PROJECT_ROOT)} does not parse: {error}") from error
        return cls(files)

    def resources(self, kind: str | None = None) -> list[Resource]:
        found = []
        for path, blocks in self.files.items():
            for block in blocks.get("resource", []):
                for resource_type, named in block.items():
                    for name, body in named.items():
                        if kind is None or literal(resource_type) == kind:
                            found.append(Resource(literal(resource_type), literal(name), body, path))
        return found

    def locals(self, directory: Path = PLATFORM_DIR) -> dict[str, Any]:
        """Every `locals` value declared in the module's files, literals unquoted."""
        merged: dict[str, Any] = {}
        for path, blocks in self.files.items():
            if path.parent == directory:
                for block in blocks.get("locals", []):
                    merged.update(literal(block))
        return merged

    def text(self) -> str:
        """Every file's text without its comments (which may name what the code must not hold)."""
        return "\n".join(re.sub(r"(^|\s)(#|//).*$", "", path.read_text(), flags=re.M) for path in self.files)
