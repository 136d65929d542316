"""The permission map (release/permission_map.yaml) resolved against Google's IAM data and Terraform's grants.

    python -m release.permissions          # the map as docs/delivery.md shows it (markdown)

Google's IAM data: roles.json (every predefined role and its permissions) and methods.json (REST method -> the
permissions it checks), from ../shared/data/gcp beside the clone (or MLOPS_GCP_DATA), else the copy in
release/gcp_data (gzipped, byte for byte the same: a test compares them where both exist), which the release
build has, since Cloud Build checks out the repository alone. Terraform's grants are read from the tables of
terraform/modules/platform/iam.tf (every grant of the platform is a row of one of them).
tests/delivery/test_permission_map.py holds the map to the code and to Terraform with this module.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import gzip
import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from contract.paths import PROJECT_ROOT

MAP_PATH = PROJECT_ROOT / "release" / "permission_map.yaml"
GCP_DATA_ENV = "MLOPS_GCP_DATA"
DEFAULT_GCP_DATA = PROJECT_ROOT.parent / "shared" / "data" / "gcp"
VENDORED_GCP_DATA = PROJECT_ROOT / "release" / "gcp_data"  # NAME.json.gz
PROJECT = "project"
# Resources no grant of ours can reach: Google's own (google:...), the source environment's (upstream:...),
# whose grants its own Terraform makes (to `promoter`, see iam.tf).
UPSTREAM, GOOGLE = "upstream:", "google:"
PROMOTER = "promoter"  # who the source environment's grants name for this environment's release build
# Terraform's IAM tables (terraform/modules/platform/iam.tf) and the kind of resource each one grants on.
GRANT_TABLES = {"bucket_roles": "bucket", "repository_roles": "repository", "dataset_roles": "dataset",
                "account_roles": "account", "topic_roles": "topic", "subscription_roles": "subscription",
                "function_roles": "function"}


class MapError(ValueError):
    """The map is malformed or names what Google's data does not know; the message says which row."""


def gcp_data_dir() -> Path:
    return Path(os.environ.get(GCP_DATA_ENV) or DEFAULT_GCP_DATA)


def read_gcp_data(name: str, folder: Path | None = None) -> Any:
    """One file of Google's data (roles.json, methods.json, google_provider_schema.json), parsed."""
    path = Path(folder or gcp_data_dir()) / name
    if path.is_file():
        return json.loads(path.read_text())
    vendored = VENDORED_GCP_DATA / f"{name}.gz"
    if folder is None and vendored.is_file():
        return json.loads(gzip.decompress(vendored.read_bytes()))
    raise FileNotFoundError(f"{path} does not exist (nor {vendored})")


@dataclasses.dataclass(frozen=True)
class GoogleIam:
    roles: Mapping[str, frozenset[str]]  # roles/NAME -> its permissions
    methods: Mapping[str, tuple[str, ...]]  # REST method -> the permissions it checks

    @classmethod
    @functools.cache
    def load(cls, folder: Path | None = None) -> GoogleIam:
        roles = read_gcp_data("roles.json", folder)
        methods = read_gcp_data("methods.json", folder)
        return cls({name: frozenset(role["permissions"]) for name, role in roles.items()},
                   {name: tuple(permissions) for name, permissions in methods.items()})

    @functools.cached_property
    def permissions(self) -> frozenset[str]:
        """Every permission some predefined role holds: the ones that exist."""
        return frozenset().union(*self.roles.values())


@dataclasses.dataclass(frozen=True)
class Row:
    identity: str
    method: str
    resource: str
    by: str  # code | platform
    why: str
    source: str = ""
    pending: str = ""  # the issue whose change adds the code this row describes
    permissions: tuple[str, ...] = ()  # declared on the row (narrower than the method's)


@dataclasses.dataclass(frozen=True)
class Identity:
    name: str
    kind: str
    runs: str
    code: tuple[str, ...]
    stop: Mapping[str, str]
    google_roles: tuple[str, ...]
    source: str
    rows: tuple[Row, ...]


@dataclasses.dataclass(frozen=True)
class PermissionMap:
    actions: Mapping[str, Mapping[str, Any]]
    narrowed: Mapping[str, Mapping[str, Any]]
    unmapped: Mapping[str, Mapping[str, Any]]
    not_google: Mapping[str, str]
    identities: Mapping[str, Identity]

    @classmethod
    def load(cls, path: Path = MAP_PATH) -> PermissionMap:
        raw = yaml.safe_load(Path(path).read_text())
        identities = {}
        for name, entry in raw["identities"].items():
            rows = []
            for index, row in enumerate(entry.get("calls", [])):
                unknown = set(row) - {"method", "resource", "by", "why", "source", "pending", "permissions"}
                required = {"method", "resource", "by", "why"}
                if unknown or not required <= set(row) or row["by"] not in ("code", "platform"):
                    raise MapError(f"{path}: {name} row {index + 1} {row}: expected method, resource, why, by (code or "
                                   f"platform), optionally source, pending, permissions; unknown {sorted(unknown)}")
                if row["by"] == "platform" and not row.get("source"):
                    raise MapError(f"{path}: {name} row {index + 1} ({row['method']}): a platform row names its source")
                rows.append(Row(name, row["method"], str(row["resource"]), row["by"], row["why"],
                                str(row.get("source", "")), str(row.get("pending", "")),
                                tuple(row.get("permissions", ()))))
            identities[name] = Identity(name, entry["kind"], entry["runs"], tuple(entry.get("code", ())),
                                        dict(entry.get("stop", {})), tuple(entry.get("google_roles", ())),
                                        str(entry.get("source", "")), tuple(rows))
        return cls(raw.get("actions", {}), raw.get("narrowed", {}), raw.get("unmapped", {}),
                   raw.get("not_google", {}), identities)

    def rows(self) -> list[Row]:
        return [row for identity in self.identities.values() for row in identity.rows]

    def permissions(self, row: Row, iam: GoogleIam) -> tuple[str, ...]:
        """What a row needs: its own list, else the action's, the narrowed or unmapped entry's, methods.json's."""
        if row.permissions:
            return row.permissions
        for table in (self.actions, self.narrowed, self.unmapped):
            if row.method in table:
                return tuple(table[row.method]["permissions"])
        return iam.methods.get(row.method, ())

    def problems(self, iam: GoogleIam) -> list[str]:
        """Everything in the map Google's data contradicts or does not know."""
        found = []
        for method, entry in self.narrowed.items():
            listed = set(iam.methods.get(method, ()))
            if not listed or not set(entry["permissions"]) < listed or not entry.get("why"):
                found.append(f"narrowed {method}: {entry['permissions']} must be a strict subset of methods.json's "
                             f"{sorted(listed)} with a why")
        for method, entry in self.unmapped.items():
            if iam.methods.get(method):
                found.append(f"unmapped {method}: methods.json maps it to {list(iam.methods[method])}; use that")
            if not entry.get("source"):
                found.append(f"unmapped {method}: no source")
        for action, entry in self.actions.items():
            if action in iam.methods or not entry.get("source") or not entry.get("permissions"):
                found.append(f"action {action}: an action is no REST method of methods.json and names its "
                             "permissions and source")
        for row in self.rows():
            where = f"{row.identity}: {row.method} on {row.resource}"
            if row.method not in iam.methods and row.method not in self.actions:
                found.append(f"{where}: no such REST method in methods.json, and no action of that name")
            needed = self.permissions(row, iam)
            if not needed:
                found.append(f"{where}: methods.json maps no permission to it; add it to `unmapped` with its source")
            if row.permissions and not row.source:
                found.append(f"{where}: permissions given on the row need a source")
            found += [f"{where}: {permission} is no permission of any predefined role (roles.json)"
                      for permission in needed if permission not in iam.permissions]
        for identity in self.identities.values():
            found += [f"{identity.name}: {role} is no predefined role" for role in identity.google_roles
                      if role not in iam.roles]
        return found


# --- Terraform -----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Grant:
    identity: str  # a key of iam.tf's members
    role: str  # roles/NAME, or a key of custom_roles
    scope: str  # project, or KIND:NAME (bucket:landing, account:pipelines, topic:dead-letters, ...)
    source: str  # terraform | google (a service agent's role, granted by Google)

    def describe(self) -> str:
        where = "" if self.scope == PROJECT else f" on {self.scope}"
        return f"{self.role}{where}" + (" (Google's)" if self.source == "google" else "")


def terraform_grants(platform_locals: Mapping[str, Any]) -> list[Grant]:
    """Every grant iam.tf makes, from its tables."""
    grants = [Grant(identity, role, PROJECT, "terraform")
              for identity, roles in platform_locals.get("project_roles", {}).items() for role in roles]
    grants += [Grant(entry["identity"], entry["role"], entry["resource"], "terraform")
               for entry in platform_locals.get("conditional_project_roles", {}).values()]
    for table, kind in GRANT_TABLES.items():  # a table iam.tf lacks grants nothing (a test requires each)
        grants += [Grant(identity, role, f"{kind}:{target}", "terraform")
                   for identity, targets in platform_locals.get(table, {}).items() for target, role in targets.items()]
    return grants


@dataclasses.dataclass(frozen=True)
class Resolution:
    """A row's permissions, each with the grants that give it (empty: missing)."""
    row: Row
    granted_by: Mapping[str, tuple[Grant, ...]]

    @property
    def missing(self) -> list[str]:
        return [permission for permission, grants in self.granted_by.items() if not grants]


class Proof:
    """The map against Terraform: who holds what, which rows it satisfies, which grants no row needs."""

    def __init__(self, pmap: PermissionMap, iam: GoogleIam, platform_locals: Mapping[str, Any]) -> None:
        self.map, self.iam = pmap, iam
        self.custom_roles = {name: frozenset(role["permissions"])
                             for name, role in platform_locals.get("custom_roles", {}).items()}
        self.accounts = set(platform_locals["service_accounts"])
        self.grants = terraform_grants(platform_locals) + [
            Grant(identity.name, role, PROJECT, "google")
            for identity in pmap.identities.values() for role in identity.google_roles]

    def role_permissions(self, role: str) -> frozenset[str]:
        return self.custom_roles[role] if role in self.custom_roles else self.iam.roles.get(role, frozenset())

    def scopes(self, row: Row) -> list[str]:
        """The row's resources one by one (`account:fn-*` is every matching account)."""
        kind, _, name = row.resource.partition(":")
        if kind == "account" and any(char in name for char in "*?["):
            return [f"account:{account}" for account in sorted(self.accounts) if fnmatch.fnmatch(account, name)]
        return [row.resource]

    @staticmethod
    def covers(grant: Grant, identity: str, scope: str) -> bool:
        if scope.startswith(UPSTREAM):  # granted by the source environment to this one's release build
            return grant.identity == PROMOTER and identity == "release-build" and grant.scope == scope[len(UPSTREAM):]
        return grant.identity == identity and grant.scope in (PROJECT, scope)

    def resolve(self, row: Row) -> list[Resolution]:
        """Per resource of the row, the grants giving each permission; nothing to resolve on google: resources."""
        if row.resource.startswith(GOOGLE):
            return []
        needed = self.map.permissions(row, self.iam)
        return [Resolution(dataclasses.replace(row, resource=scope), {
            permission: tuple(grant for grant in self.grants if self.covers(grant, row.identity, scope)
                              and permission in self.role_permissions(grant.role)) for permission in needed})
                for scope in self.scopes(row)]

    def missing(self) -> list[str]:
        return [f"{res.row.identity} needs {permission} on {res.row.resource} ({res.row.method}: {res.row.why}); "
                f"no role it holds there has it" for row in self.map.rows() for res in self.resolve(row)
                for permission in res.missing]

    def unused_grants(self) -> list[str]:
        """Terraform grants no row needs: no row of the identity, on a resource the grant reaches, needs a
        permission of the role."""
        used = {grant for row in self.map.rows() for res in self.resolve(row) for grants in res.granted_by.values()
                for grant in grants}
        return [f"{grant.identity}: {grant.describe()} is needed by no row of the permission map"
                for grant in self.grants if grant.source == "terraform" and grant not in used]

    def unused_custom_permissions(self) -> list[str]:
        """A custom role's permissions that an identity holding it needs on no row (each holder, each one)."""
        found = []
        for grant in self.grants:
            if grant.role not in self.custom_roles:
                continue
            needed = {permission for row in self.map.rows() for res in self.resolve(row)
                      for permission, grants in res.granted_by.items() if grant in grants}
            found += [f"{grant.identity}: custom role {grant.role} holds {permission}, which it needs on no row"
                      for permission in sorted(self.custom_roles[grant.role] - needed)]
        return found

    def unknown_custom_permissions(self) -> list[str]:
        return [f"custom role {name}: {permission} is no permission of any predefined role (roles.json)"
                for name, permissions in self.custom_roles.items() for permission in sorted(permissions)
                if permission not in self.iam.permissions]


# --- the table docs/delivery.md shows ------------------------------------------------------------------------

def render(proof: Proof) -> str:
    """One line per row and permission: identity, method, on, permission, the role that grants it."""
    lines = ["| identity | method | on | permission | granted by |", "|---|---|---|---|---|"]
    for identity in proof.map.identities.values():
        for row in identity.rows:
            method = row.method.removeprefix("aiplatform.projects.locations.")
            note = f" ({row.pending})" if row.pending else ""
            resolutions = proof.resolve(row)
            if not resolutions:  # a resource Google owns
                for permission in proof.map.permissions(row, proof.iam):
                    lines.append(f"| {row.identity} | `{method}`{note} | {row.resource} | `{permission}` | "
                                 "Google-managed |")
                continue
            for permission in proof.map.permissions(row, proof.iam):
                grants = sorted({grant.describe() for res in resolutions for grant in res.granted_by[permission]})
                lines.append(f"| {row.identity} | `{method}`{note} | {row.resource} | `{permission}` | "
                             f"{'; '.join(grants) or '**missing**'} |")
    return "\n".join(lines) + "\n"


def render_excess(proof: Proof) -> str:
    """Per predefined role Terraform grants on the whole project: how many of its permissions no row of its
    holder needs, and the ones that reach data or identities across the project (storage, BigQuery tables,
    service accounts), needed or not: what a predefined role costs beyond the map."""
    lines = ["| identity | project-wide role | permissions no row needs | data or identities it reaches project-wide |",
             "|---|---|---|---|"]
    for grant in proof.grants:
        if grant.source != "terraform" or grant.role in proof.custom_roles or grant.scope != PROJECT:
            continue
        needed = {permission for row in proof.map.rows() for res in proof.resolve(row)
                  for permission, grants in res.granted_by.items() if grant in grants}
        permissions = proof.role_permissions(grant.role)
        reach = sorted(permission for permission in permissions
                       if permission.startswith(("storage.objects.", "bigquery.tables.", "iam.serviceAccounts.")))
        lines.append(f"| {grant.identity} | {grant.role} | {len(permissions - needed)} of {len(permissions)} | "
                     f"{', '.join(f'`{permission}`' for permission in reach) or '-'} |")
    return "\n".join(lines) + "\n"


def load_proof(gcp_data: Path | None = None) -> Proof:
    from release.terraform_model import Terraform

    return Proof(PermissionMap.load(), GoogleIam.load(gcp_data), Terraform.load().locals())


DOCS = Path(__file__).resolve().parent.parent / "docs" / "delivery.md"


def write_docs(proof: Proof, docs: Path = DOCS) -> None:
    """Replaces the two tables in docs/delivery.md (each the run of `|` lines under its header) with the
    current ones."""
    lines = docs.read_text().splitlines(keepends=True)
    for table in (render(proof), render_excess(proof)):
        header = table.splitlines(keepends=True)[0]
        start = lines.index(header)
        end = next((index for index in range(start, len(lines)) if not lines[index].startswith("|")), len(lines))
        lines[start:end] = [table]
    docs.write_text("".join(lines))


def main(argv: Iterable[str] | None = None) -> int:
    """Prints the permission map as tables; `--write-docs` puts them into docs/delivery.md instead."""
    args = list(argv or ())
    try:
        proof = load_proof()
    except FileNotFoundError as error:
        print(f"error: {error} (Google's IAM data: ../shared/data/gcp, or {GCP_DATA_ENV})", file=sys.stderr)
        return 2
    if args == ["--write-docs"]:
        write_docs(proof)
        print(f"{DOCS}: permission tables written")
    elif args:
        print(f"error: unknown arguments {args}; expected none (print) or --write-docs", file=sys.stderr)
        return 2
    else:
        sys.stdout.write(render(proof) + "\n" + render_excess(proof))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
