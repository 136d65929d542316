"""terraform/ against the google provider's own schema (6.50, ../shared/data/gcp/google_provider_schema.json),
what `terraform validate` would say if providers could be downloaded here; and `terraform fmt`.

- Every `google_*` resource and data block names only arguments and nested blocks of its schema (a
  `dynamic "NAME"` block too), and sets every required one.
- Every reference `google_TYPE.NAME...ATTRIBUTE` (and `data.google_...`) names a block of that type and
  name in the same module and a real attribute of the type; every `local.X`, `var.X` and `module.M` a
  module uses is declared there.
- `terraform fmt -check -recursive terraform/` passes (the binary is required on CI; skipped elsewhere).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contract.paths import PROJECT_ROOT
from release.permissions import read_gcp_data
from release.terraform_model import TERRAFORM_DIR, Terraform, literal
from tests.conftest import require_or_skip

META_ARGUMENTS = {"for_each", "count", "depends_on", "lifecycle", "provider", "provisioner", "connection", "dynamic"}
_REFERENCE_HEAD = re.compile(r"(?<![\w.])(data\.)?(google_[a-z0-9_]+)\.([a-z0-9_-]+)")
_ATTRIBUTE = re.compile(r"\.([a-z_][a-z0-9_]*)")
_NAMED = re.compile(r"(?<![\w.])(local|var|module)\.([a-zA-Z_][a-zA-Z0-9_-]*)")


@pytest.fixture(scope="module")
def schema() -> dict:
    return read_gcp_data("google_provider_schema.json")


def _blocks(terraform: Terraform) -> Iterator[tuple[str, str, str, dict, Path]]:
    """(resource | data, type, name, body, file) of every google_* block."""
    for path, blocks in terraform.files.items():
        for kind in ("resource", "data"):
            for block in blocks.get(kind, []):
                for block_type, named in block.items():
                    if literal(block_type).startswith("google_"):
                        for name, body in named.items():
                            yield kind, literal(block_type), literal(name), body, path


def _problems(body: dict, arguments: dict, where: str) -> Iterator[str]:
    present = {literal(key) for key in body if not key.startswith("__")}
    for key in sorted(present - META_ARGUMENTS):
        if key not in arguments:
            yield f"{where}: {key!r} is no argument or block of the schema (expected one of {sorted(arguments)})"
            continue
        nested = arguments[key].get("block")
        value = body[key]
        if nested is not None and isinstance(value, list) and all(isinstance(item, dict) for item in value):
            for index, item in enumerate(value):
                yield from _problems(item, nested, f"{where}.{key}[{index}]")
        elif nested is not None:
            yield f"{where}: {key!r} is a block, written as an argument"
    for dynamic in body.get("dynamic", []):
        for name, spec in dynamic.items():
            name = literal(name)
            if name not in arguments or arguments[name].get("block") is None:
                yield f"{where}: dynamic {name!r} is no block of the schema"
                continue
            for index, content in enumerate(spec.get("content", [])):
                yield from _problems(content, arguments[name]["block"], f"{where}.dynamic.{name}[{index}]")
            present.add(name)
    for key, spec in sorted(arguments.items()):
        if spec.get("required") and key not in present:
            yield f"{where}: required {key!r} is not set"


def test_every_google_block_fits_the_provider_schema(terraform: Terraform, schema: dict):
    checked, problems = 0, []
    for kind, block_type, name, body, path in _blocks(terraform):
        family = schema[kind]
        if block_type not in family:
            problems.append(f"{path.relative_to(TERRAFORM_DIR)}: {kind} {block_type} is not in provider 6.50")
            continue
        checked += 1
        problems += list(_problems(body, family[block_type]["arguments"],
                                   f"{path.relative_to(TERRAFORM_DIR)}: {block_type}.{name}"))
    assert checked > 25
    assert problems == [], "\n".join(problems)


def _references(text: str) -> Iterator[tuple[str, str, str, str]]:
    """(data. or "", type, name, attribute) of every `google_TYPE.NAME[...][...].ATTRIBUTE` in an expression,
    index expressions nested to any depth."""
    for match in _REFERENCE_HEAD.finditer(text):
        position, depth = match.end(), 0
        while position < len(text) and (text[position] == "[" or depth):
            depth += {"[": 1, "]": -1}.get(text[position], 0)
            position += 1
        attribute = _ATTRIBUTE.match(text, position)
        if attribute:
            yield match[1] or "", match[2], match[3], attribute[1]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_every_reference_names_a_declared_block_and_a_real_attribute(terraform: Terraform, schema: dict):
    by_module: dict[Path, list[Path]] = {}
    for path in terraform.files:
        by_module.setdefault(path.parent, []).append(path)
    references, problems = 0, []
    for module, paths in sorted(by_module.items()):
        declared = {(kind, block_type, name) for kind, block_type, name, _, path in _blocks(terraform)
                    if path.parent == module}
        names = {"local": set(), "var": set(), "module": set()}
        for path in paths:
            blocks = terraform.files[path]
            names["local"] |= {literal(key) for block in blocks.get("locals", []) for key in block
                               if not key.startswith("__")}
            names["var"] |= {literal(name) for block in blocks.get("variable", []) for name in block}
            names["module"] |= {literal(name) for block in blocks.get("module", []) for name in block}
        for path in paths:
            where = path.relative_to(TERRAFORM_DIR)
            for text in _strings(terraform.files[path]):
                for data, block_type, name, attribute in _references(text):
                    kind = "data" if data else "resource"
                    references += 1
                    if (kind, block_type, name) not in declared:
                        problems.append(f"{where}: {data}{block_type}.{name} is not declared in {module.name}")
                    elif attribute not in schema[kind][block_type]["attributes"]:
                        problems.append(f"{where}: {block_type} has no attribute {attribute!r}")
                for kind, name in _NAMED.findall(text):
                    if name not in names[kind]:
                        problems.append(f"{where}: {kind}.{name} is not declared in "
                                        f"{module.relative_to(TERRAFORM_DIR)}")
    assert references > 30
    assert problems == [], "\n".join(sorted(set(problems)))


def test_a_misspelled_argument_a_missing_required_one_and_a_wrong_attribute_are_caught(schema: dict):
    endpoint = schema["resource"]["google_vertex_ai_endpoint"]["arguments"]
    body = {"display_name": '"x"', "location": '"us-central1"', "labelz": "${local.labels}",
            "predict_request_response_logging_config": [{"__is_block__": True, "enabld": True}]}
    problems = list(_problems(body, endpoint, "e"))
    assert any("'labelz' is no argument" in problem for problem in problems), problems
    assert any("'enabld' is no argument" in problem for problem in problems), problems
    assert any("required 'name' is not set" in problem for problem in problems), problems
    assert "writer_identity" in schema["resource"]["google_logging_project_sink"]["attributes"]
    assert "email_address" not in schema["resource"]["google_service_account"]["attributes"]


def test_terraform_fmt_finds_nothing_to_rewrite():
    """Defect 13: `terraform fmt -check -recursive terraform/` (offline: fmt needs no provider)."""
    binary = shutil.which("terraform")
    require_or_skip(binary is not None, "the terraform binary is not installed (HashiCorp's releases or apt "
                                        "repository; release/ci_tools.sh installs it on Cloud Build)")
    result = subprocess.run([binary, "fmt", "-check", "-recursive", "-list=true", str(TERRAFORM_DIR)],
                            capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    assert result.returncode == 0, f"terraform fmt would rewrite: {result.stdout.split()} {result.stderr[-500:]}"
