"""The Google API calls the code makes, found by reading it: what the permission map is checked against.

What this scan sees (and nothing else):
1. REST calls the code sends itself: a string or f-string holding an API path (`/v1/`, `/v1beta1/`, `/v3/`,
   `/storage/v1/`), with the HTTP verb of the `send("VERB", ...)` / `session.get(...)` in the same function
   (else in the module), resolved to a method by Google's discovery documents (fidelity/discovery.py), the
   way the stand-ins route requests.
2. Google client library calls named from their import: `aiplatform.Model.list(...)`,
   `ml_monitoring.ModelMonitor.create(...)`, ... (SDK_ENTRIES). Any other call through an imported Google
   client module or class is reported as unknown, so a new kind of call cannot slip past unseen.
3. Methods called on what those libraries return, by name (METHOD_CALLS): distinctive names anywhere
   (`download_as_bytes`, `list_blobs`, `add_version_aliases`, ...), generic ones (`update`, `deploy`,
   `delete`, ...) only on a receiver whose name says what it is (`endpoint`, `monitor`, `blob`). A generic
   call on a receiver named otherwise is not seen: that is the scan's blind spot, kept small by naming.
4. GCPC container ops in compiled/*.json, by the launcher module each executor runs (GCPC_LAUNCHERS).
5. gcloud commands in shell scripts (GCLOUD_COMMANDS), attributed to the impersonated account when the
   command line says --impersonate-service-account.

Which code an identity runs: a call graph by name from its entry points (`scan_entries`): a function reaches
what it calls or passes on, resolved through the imports; a method called on a receiver the scan cannot type
reaches that method of every repository class the reached code makes. So a function that never lists a
bucket is not charged with another function's listing in the same module.

What it cannot see is declared in the map as platform rows with their source: calls Google's services
make for us (Vertex pulling images, Cloud Functions copying sources, Pub/Sub signing push tokens, the KFP
launcher moving artifacts, Cloud Storage FUSE), and the permissions SQL needs inside a BigQuery job.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import json
import re
import shlex
from collections.abc import Iterable, Iterator
from pathlib import Path

from contract.paths import PROJECT_ROOT
from fidelity import discovery

# Discovery documents the REST paths are resolved against (the APIs the code calls directly).
REST_APIS = ("aiplatform.v1", "aiplatform.v1beta1", "storage.v1", "monitoring.v3", "bigquery.v2")
_API_PATH = re.compile(r"/(v1|v1beta1|v2|v3)/|/storage/v1/")
# A path right after `googleapis.com/NAME` belongs to API NAME (compute/v1/...): not one of REST_APIS.
_FOREIGN_API = re.compile(r"googleapis\\?\.com/(?P<api>[a-z]+)$")
_VERBS = {"get": "GET", "post": "POST", "patch": "PATCH", "put": "PUT", "delete": "DELETE"}

AI = "aiplatform.projects.locations."
# Calls named from an imported Google client module or class -> the REST methods they send.
SDK_ENTRIES: dict[str, tuple[str, ...]] = {
    "aiplatform.init": (),
    "aiplatform.Model.list": (AI + "models.list",),
    "aiplatform.Model": (AI + "models.get",),
    "aiplatform.Model.upload": (AI + "models.upload",),
    "aiplatform.Endpoint.list": (AI + "endpoints.list",),
    "aiplatform.Endpoint.create": (AI + "endpoints.create",),
    "ml_monitoring.ModelMonitor.list": (AI + "modelMonitors.list",),
    "ml_monitoring.ModelMonitor.create": (AI + "modelMonitors.create",),
    "ml_monitoring.ModelMonitor": (AI + "modelMonitors.get",),
    "bigquery.Client": (),
    "bigquery_storage_v1.BigQueryReadClient": (),
    "bigquery.ScalarQueryParameter": (),
    "bigquery.QueryJobConfig": (),
    "storage.Client": (),
    "gcs.Client": (),
    "pubsub_v1.PublisherClient": (),
    "pubsub_v1.SubscriberClient": (),
    "RegistryClient": (),
    "AuthorizedSession": (),
    "google.auth.default": (),
    "impersonated_credentials.Credentials": ("iamcredentials.projects.serviceAccounts.generateAccessToken",),
}
# The import names whose every call must be one of SDK_ENTRIES.
SDK_MODULES = {"aiplatform", "ml_monitoring", "bigquery", "bigquery_storage_v1", "storage", "gcs", "pubsub_v1",
               "impersonated_credentials"}


@dataclasses.dataclass(frozen=True)
class MethodCall:
    name: str
    receiver: str | None  # a regular expression the receiver's text must match; None: any receiver
    methods: tuple[str, ...]


METHOD_CALLS = (
    MethodCall("download_as_bytes", None, ("storage.objects.get",)),
    MethodCall("download_to_filename", None, ("storage.objects.get",)),
    MethodCall("list_blobs", None, ("storage.objects.list",)),
    MethodCall("upload_from_string", None, ("storage.objects.insert",)),
    MethodCall("upload_from_filename", None, ("storage.objects.insert",)),
    MethodCall("delete", r"(?i)blob|stale", ("storage.objects.delete",)),
    MethodCall("list_model_versions", None, (AI + "models.listVersions",)),
    MethodCall("add_version_aliases", None, (AI + "models.mergeVersionAliases",)),
    MethodCall("deploy", r"(?i)endpoint", (AI + "endpoints.deployModel",)),
    MethodCall("undeploy", r"(?i)endpoint", (AI + "endpoints.undeployModel",)),
    MethodCall("update", r"(?i)endpoint", (AI + "endpoints.patch",)),
    MethodCall("predict", r"(?i)endpoint", (AI + "endpoints.predict",)),
    MethodCall("_sync_gca_resource", r"(?i)endpoint", (AI + "endpoints.get",)),
    MethodCall("update", r"(?i)monitor", (AI + "modelMonitors.patch",)),
    MethodCall("list_schedules", None, (AI + "schedules.list",)),
    MethodCall("create_schedule", None, (AI + "schedules.create",)),
    MethodCall("update_schedule", None, (AI + "schedules.patch",)),
    MethodCall("query", r"(?i)client", ("bigquery.jobs.insert", "bigquery.jobs.getQueryResults")),
    MethodCall("get_dataset", None, ("bigquery.datasets.get",)),
    MethodCall("get_table", None, ("bigquery.tables.get",)),
    MethodCall("create_read_session", None, ("bigquerystorage.readSessions.create",)),
    MethodCall("read_rows", r"(?i)read_client", ("bigquerystorage.readSessions.readRows",)),
    MethodCall("publish", r"(?i)publisher", ("pubsub.projects.topics.publish",)),
    MethodCall("upload_pipeline", None, ("artifactregistry.kfp.upload",)),
)

# GCPC launchers (google_cloud_pipeline_components/container/v1/*/remote_runner.py and
# gcp_launcher/job_remote_runner.py in site-packages): create, poll, and cancel when the run is cancelled.
GCPC_LAUNCHERS = {
    "google_cloud_pipeline_components.container.v1.custom_job.launcher":
        (AI + "customJobs.create", AI + "customJobs.get", AI + "customJobs.cancel"),
    "google_cloud_pipeline_components.container.v1.batch_prediction_job.launcher":
        (AI + "batchPredictionJobs.create", AI + "batchPredictionJobs.get", AI + "batchPredictionJobs.cancel"),
    "google_cloud_pipeline_components.container.v1.model.get_model.launcher": (AI + "models.get",),
}

# gcloud command -> the REST methods it sends (the gcloud reference of each command; `functions deploy`
# of an existing gen2 function reads it, patches it and polls the operation).
GCLOUD_COMMANDS = {
    ("storage", "cp"): ("storage.objects.insert",),
    ("functions", "list"): ("cloudfunctions.projects.locations.functions.list",),
    ("functions", "deploy"): ("cloudfunctions.projects.locations.functions.get",
                              "cloudfunctions.projects.locations.functions.patch",
                              "cloudfunctions.projects.locations.operations.get"),
}
# Other programs scripts run that reach Google: what they do, as actions of the map.
PROGRAM_ACTIONS = {
    ("docker", "push"): ("artifactregistry.docker.push",),
    ("gcrane", "cp"): ("artifactregistry.docker.pull", "artifactregistry.docker.push"),
    ("gcrane", "digest"): ("artifactregistry.docker.pull",),
}


@dataclasses.dataclass(frozen=True)
class CallSite:
    method: str  # a methods.json key, or an action of the map (artifactregistry.docker.push)
    where: str  # path:line
    impersonated: bool = False  # a gcloud command run as the account it impersonates


# --- Python --------------------------------------------------------------------------------------------

def _dotted(node: ast.AST) -> str | None:
    """`a.b.c` for a Name/Attribute chain; None when the chain holds a call or a subscript."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def _imported_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom | ast.Import):
            names |= {alias.asname or alias.name.split(".")[0] for alias in node.names}
    return names


_VALUE = "\x00"  # an interpolated value in a path: any text, one segment or several


def _sample_path(node: ast.JoinedStr | ast.Constant) -> str | None:
    """An f-string or string as a request path, each interpolated value kept as _VALUE."""
    if isinstance(node, ast.Constant):
        text = node.value if isinstance(node.value, str) else ""
    else:
        text = "".join(part.value if isinstance(part, ast.Constant) else _VALUE for part in node.values)
    match = _API_PATH.search(text)
    if not match:
        return None
    foreign = _FOREIGN_API.search(text[:match.start()])
    if foreign and foreign["api"] not in ("storage", "bigquery"):
        return None  # another API's URL (a Compute Engine subnetwork in a message, say), never sent here
    return text[match.start() + 1:].split("?")[0]


@functools.cache
def _templates() -> tuple[tuple[discovery.Method, str], ...]:
    """Every method of REST_APIS with its path as a sample (each variable `x`): what a request would send."""
    return tuple((method, re.sub(r"\{[^}]+\}", "x", method.template))
                 for name in REST_APIS for method in discovery.load(name).methods)


def rest_method(verb: str, path: str) -> str | None:
    """The discovery method a verb and a code path (with _VALUE placeholders) name: the most specific one
    whose path the code's can produce."""
    parts = re.split(f"({_VALUE})", path)
    for value in ("[^/]+", ".+?"):  # a value as one segment first; as several (a resource name) if none fits
        pattern = re.compile("".join(value if part == _VALUE else re.escape(part) for part in parts))
        matches = [method for method, sample in _templates()
                   if method.http_method == verb and pattern.fullmatch(sample)]
        if matches:
            return max(matches, key=lambda method: method.literal_length).id
    return None


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """ast.walk, but of a module only its top-level code, not the bodies of its functions and classes."""
    if not isinstance(node, ast.Module):
        yield from ast.walk(node)
        return
    for statement in node.body:
        if not isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield from ast.walk(statement)


def _verbs(node: ast.AST) -> set[str]:
    """The HTTP verbs a function sends with: `send("POST", ...)`, `session.get(...)`."""
    verbs = set()
    for call in ast.walk(node):
        if not isinstance(call, ast.Call):
            continue
        # send("POST", url), session.request("GET", url), or a helper of ours taking the verb first
        # (_pages("GET", url, ...)): a constant HTTP verb as the first argument.
        if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str) \
                and call.args[0].value in _VERBS.values():
            verbs.add(call.args[0].value)
        elif isinstance(call.func, ast.Attribute) and call.func.attr in _VERBS \
                and "session" in ast.unparse(call.func.value).lower():
            verbs.add(_VERBS[call.func.attr])
    return verbs


def _function_calls(node: ast.AST, where: str, imported: set[str], verbs: set[str],
                    skip: set[int]) -> tuple[list[CallSite], list[str], list[str]]:
    """The Google calls one function (or a module's top-level code) makes: REST paths, SDK calls."""
    found: list[CallSite] = []
    unknown: list[str] = []
    unresolved: list[str] = []
    parts = {id(part) for child in _walk(node) if isinstance(child, ast.JoinedStr) for part in child.values}
    for child in _walk(node):
        line = f"{where}:{getattr(child, 'lineno', '?')}"
        if isinstance(child, ast.JoinedStr | ast.Constant) and id(child) not in skip | parts:
            path = _sample_path(child)
            if path is not None:
                methods = {m for verb in sorted(verbs) if (m := rest_method(verb, path))}
                if not methods:
                    unresolved.append(f"{line}: {sorted(verbs) or 'no verb'} {path}")
                found += [CallSite(method, line) for method in sorted(methods)]
        if not isinstance(child, ast.Call):
            continue
        name = _dotted(child.func)
        head = name.split(".")[0] if name else ""
        if head in imported and head in SDK_MODULES | {"RegistryClient", "AuthorizedSession", "google"}:
            if name in SDK_ENTRIES:
                found += [CallSite(method, line) for method in SDK_ENTRIES[name]]
            elif head in SDK_MODULES:
                unknown.append(f"{line}: {name}(...)")
        if isinstance(child.func, ast.Attribute) and name not in SDK_ENTRIES:
            receiver = ast.unparse(child.func.value)
            for rule in METHOD_CALLS:
                if child.func.attr == rule.name and (rule.receiver is None or re.search(rule.receiver, receiver)):
                    found += [CallSite(method, line) for method in rule.methods]
    return found, unknown, unresolved


# --- which functions an entry point runs: a call graph by name -------------------------------------------

def _module_file(module: str) -> Path | None:
    if not module:
        return None
    base = PROJECT_ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@dataclasses.dataclass
class _Module:
    """One repository module: its functions (`name`, `Class.method`), classes and what its names import."""
    name: str
    path: str  # relative to the project root
    tree: ast.Module
    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef]
    classes: dict[str, list[str]]  # class -> its methods
    imports: dict[str, str]  # local name -> "module" or "module:attribute"
    docstrings: set[int]

    @functools.cached_property
    def imported_names(self) -> set[str]:
        return _imported_names(self.tree)

    @functools.cached_property
    def verbs(self) -> set[str]:
        return _verbs(self.tree)

    @classmethod
    def parse(cls, name: str, path: Path) -> _Module:
        tree = ast.parse(path.read_text(), str(path))
        functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        classes: dict[str, list[str]] = {}
        for statement in tree.body:
            if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
                functions[statement.name] = statement
            elif isinstance(statement, ast.ClassDef):
                methods = [item for item in statement.body if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)]
                classes[statement.name] = [method.name for method in methods]
                functions |= {f"{statement.name}.{method.name}": method for method in methods}
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imports: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    imports[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    imports[alias.asname or alias.name] = submodule if _module_file(submodule) else \
                        f"{base}:{alias.name}"
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        return cls(name, path.relative_to(PROJECT_ROOT).as_posix(), tree, functions, classes, imports, docstrings)


@functools.cache
def _module(name: str) -> _Module | None:
    path = _module_file(name)
    return _Module.parse(name, path) if path else None


def _module_name(relative: str) -> str:
    parts = Path(relative).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: _Module, target: str, depth: int = 0,
             local: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """A dotted name as `module` sees it -> what it names in the repository: functions (`module`, `name`) and
    classes (`module`, `Class`). Names in `local` were imported inside the function: they shadow the module's."""
    head, _, rest = target.partition(".")
    if depth > 8:
        return []
    if head not in local:
        if head in module.functions and not rest:
            return [(module.name, head)]
        if head in module.classes:
            if not rest:
                return [(module.name, head)]
            return [(module.name, f"{head}.{rest}")] if rest in module.classes[head] else []
    imported = module.imports.get(head)
    if imported is None:
        return []
    if ":" in imported:  # from M import name
        source, name = imported.split(":")
        other = _module(source)
        return _resolve(other, ".".join(filter(None, [name, rest])), depth + 1) if other else []
    other = _module(imported)  # import M, from P import M
    return _resolve(other, rest, depth + 1) if other is not None and rest else []


# Method names too common to resolve on an untyped receiver (dict, list, str, Path, file methods).
_COMMON_METHODS = frozenset({"get", "items", "keys", "values", "update", "append", "extend", "pop", "split", "strip",
                             "rstrip", "lstrip", "join", "format", "read", "write", "read_text", "write_text",
                             "read_bytes", "write_bytes", "exists", "mkdir", "startswith", "endswith", "replace",
                             "lower", "upper", "add", "copy", "setdefault", "encode", "decode", "close", "open",
                             "sort", "index", "count", "partition", "rpartition", "is_file", "is_dir", "glob",
                             "result", "json", "name"})


def _references(module: _Module, node: ast.AST, enclosing_class: str | None) -> tuple[set[tuple[str, str]], set[str]]:
    """What a function names in the repository (functions it calls or passes on, classes it makes or
    passes on), and the method names it calls on receivers the scan cannot type."""
    named: set[tuple[str, str]] = set()
    untyped: set[str] = set()
    local = frozenset(alias.asname or alias.name for child in _walk(node) if isinstance(child, ast.ImportFrom)
                      for alias in child.names) if not isinstance(node, ast.Module) else frozenset()
    for child in _walk(node):
        if not isinstance(child, ast.Name | ast.Attribute) or not isinstance(child.ctx, ast.Load):
            continue
        name = _dotted(child)
        if name and name.startswith(("self.", "cls.")):
            method = name.split(".")[1]
            if enclosing_class and name.count(".") == 1 and method in module.classes.get(enclosing_class, []):
                named.add((module.name, f"{enclosing_class}.{method}"))
            elif isinstance(child, ast.Attribute) and child.attr not in _COMMON_METHODS:
                untyped.add(child.attr)
            continue
        resolved = _resolve(module, name, local=local) if name else []
        named |= set(resolved)
        head = name.split(".")[0] if name else ""
        external = head in module.imports and _module(module.imports[head].split(":")[0]) is None
        if not resolved and isinstance(child, ast.Attribute) and child.attr not in _COMMON_METHODS and not external:
            untyped.add(child.attr)
    return named, untyped


@dataclasses.dataclass(frozen=True)
class CodeScan:
    calls: tuple[CallSite, ...]
    reached: tuple[str, ...]  # file:function (file: for module code), for the record
    unknown: tuple[str, ...]  # calls through a Google client the scan has no entry for
    unresolved: tuple[str, ...]  # API paths no discovery method matches


def scan_entries(entries: Iterable[str], stops: Iterable[str] = (), not_google: Iterable[str] = ()) -> CodeScan:
    """The Google calls reachable from `entries`: files (the module's code and every top-level function of
    it are entry points) or `file:function`. `stops` (`file` or `file:function`) are not followed; files in
    `not_google` talk to local stand-ins only and are not scanned.

    A call graph by name: a function reaches what it calls or passes on (resolved through the imports), a
    class it names is made, and a method called on a receiver the scan cannot type reaches the method of
    that name of every class the reached code makes (rapid type analysis)."""
    stops, not_google = set(stops), set(not_google)
    todo: list[tuple[str, str]] = []
    for entry in entries:
        relative, _, function = entry.partition(":")
        module = _module(_module_name(relative))
        if module is None or (function and function not in module.functions):
            raise FileNotFoundError(f"{entry}: no such module or function")
        todo += [(module.name, function)] if function else [(module.name, "")] + [
            (module.name, name) for name in module.functions if "." not in name]
    seen: set[tuple[str, str]] = set()
    made: set[tuple[str, str]] = set()  # classes the reached code makes
    untyped: set[str] = set()  # method names called on receivers the scan cannot type
    calls: list[CallSite] = []
    unknown: list[str] = []
    unresolved: list[str] = []
    while todo:
        key = todo.pop()
        if key in seen:
            continue
        module = _module(key[0])
        if module is None:
            continue
        if key[1] in module.classes:  # a class made: its constructor, and its methods called untyped so far
            seen.add(key)
            made.add(key)
            todo += [(key[0], f"{key[1]}.{method}") for method in module.classes[key[1]]
                     if method in ("__init__", "__post_init__", "__call__") or method in untyped]
            continue
        seen.add(key)
        if module.path in not_google | stops or f"{module.path}:{key[1]}" in stops:
            continue
        node = module.tree if not key[1] else module.functions.get(key[1])
        if node is None:
            continue
        found, bad, paths = _function_calls(node, module.path, module.imported_names,
                                            _verbs(node) or module.verbs, module.docstrings)
        calls += found
        unknown += bad
        unresolved += paths
        named, names = _references(module, node, key[1].split(".")[0] if "." in key[1] else None)
        new_names = names - untyped
        untyped |= names
        todo.append((module.name, ""))  # importing the module ran its top-level code
        todo += sorted(named)
        for class_module, class_name in sorted(made):
            methods = _module(class_module).classes[class_name]
            todo += [(class_module, f"{class_name}.{method}") for method in sorted(new_names) if method in methods]
    reached = sorted(f"{_module(m).path}:{f}" for m, f in seen if _module(m) is not None)
    return CodeScan(tuple(dict.fromkeys(calls)), tuple(reached), tuple(dict.fromkeys(unknown)),
                    tuple(dict.fromkeys(unresolved)))


def scan_file(relative: str) -> CodeScan:
    """Every function of one file (its methods too) and its module code, without following any call."""
    module = _module(_module_name(relative))
    calls: list[CallSite] = []
    unknown: list[str] = []
    unresolved: list[str] = []
    for node in [module.tree, *module.functions.values()]:
        found, bad, paths = _function_calls(node, module.path, module.imported_names,
                                            _verbs(node) or module.verbs, module.docstrings)
        calls += found
        unknown += bad
        unresolved += paths
    return CodeScan(tuple(calls), (), tuple(unknown), tuple(unresolved))


# --- compiled templates, shell scripts -----------------------------------------------------------------

def scan_templates(folder: Path) -> list[CallSite]:
    found = []
    for path in sorted(Path(folder).resolve().glob("*.json")):
        executors = json.loads(path.read_text())["deploymentSpec"]["executors"]
        for name, executor in sorted(executors.items()):
            command = executor.get("container", {}).get("command", [])
            for module, methods in GCPC_LAUNCHERS.items():
                if module in command:
                    found += [CallSite(method, f"{path.relative_to(PROJECT_ROOT).as_posix()}:{name}")
                              for method in methods]
            if any("google_cloud_pipeline_components" in part for part in command) and not any(
                    module in command for module in GCPC_LAUNCHERS):
                found.append(CallSite(f"unknown GCPC launcher {' '.join(command)}",
                                      f"{path.relative_to(PROJECT_ROOT).as_posix()}:{name}"))
    return found


def scan_script(relative: str) -> list[CallSite]:
    """gcloud and other programs' Google calls in a shell script, line by line."""
    found = []
    logical: list[tuple[int, str]] = []  # continuation lines joined, numbered by their first line
    for number, line in enumerate((PROJECT_ROOT / relative).read_text().splitlines(), start=1):
        if logical and logical[-1][1].endswith("\\"):
            logical[-1] = (logical[-1][0], logical[-1][1][:-1] + " " + line)
        else:
            logical.append((number, line))
    for number, line in logical:
        if line.lstrip().startswith("#"):
            continue
        for part in re.split(r"&&|\|\||;|\||\$\(", line):
            try:
                words = shlex.split(part.replace(")", " "))
            except ValueError:
                words = part.split()
            words = [word for word in words if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", word)]
            if len(words) < 2:
                continue
            impersonated = any(word.startswith("--impersonate-service-account") for word in words)
            where = f"{relative}:{number}"
            if words[0] == "gcloud" and len(words) >= 3:
                for method in GCLOUD_COMMANDS.get((words[1], words[2]), (f"unknown gcloud {words[1]} {words[2]}",)):
                    found.append(CallSite(method, where, impersonated))
                if impersonated:
                    found.append(CallSite("iamcredentials.projects.serviceAccounts.generateAccessToken", where))
            for action in PROGRAM_ACTIONS.get((words[0], words[1]), ()):
                found.append(CallSite(action, where))
    return found
