"""BigQuery Standard SQL (the subset this project writes) run on DuckDB, the local stand-in for BigQuery.

One SQL text serves Vertex and this machine: where the dialects agree it passes unchanged, where they
differ `translate` rewrites it, rule by rule (each one tested in tests/storage/test_bigquery_dialect.py):

- `` `project.dataset.table` `` (or `` `project.dataset` ``) -> `"project"."dataset"."table"`: each project
  is a DuckDB file attached under its own name (batch_prediction/local_bigquery.py), unless the caller
  maps the name to another relation (the local endpoint's request log is JSON files);
- `@name` (a named query parameter) -> `$name`;
- `SAFE_CAST` -> `TRY_CAST`; the types `FLOAT64`, `TIMESTAMP`, `NUMERIC` -> `DOUBLE`, `TIMESTAMPTZ`
  (BigQuery's TIMESTAMP is an instant, DuckDB's a wall clock), `DECIMAL(38, 9)`, and `ARRAY<T>` -> `T[]`;
  `INT64`, `STRING` and `BOOL` are DuckDB names already;
- `JSON_VALUE`, `JSON_QUERY`, `JSON_QUERY_ARRAY`, `UNIX_SECONDS` -> macros with BigQuery's semantics
  (`bq_json_value`: a JSON scalar as text, NULL for an object or array; `bq_json_query`: JSON text;
  `bq_json_query_array`: the elements as JSON texts, NULL if not an array; `bq_unix_seconds`);
- `a[SAFE_OFFSET(i)]`, `a[OFFSET(i)]` -> `a[(i) + 1]` (0-based to 1-based; out of range is NULL here,
  an error for OFFSET in BigQuery);
- `UNNEST(a) AS v` -> `UNNEST(a) AS u(v)` (BigQuery's alias names the value, DuckDB's a table);
  `UNNEST(a) AS v WITH OFFSET AS o` -> `LATERAL (SELECT u.v AS v, u.o - 1 AS o FROM UNNEST(a) WITH
  ORDINALITY AS u(v, o))`.

Anything else passes unchanged: a construct DuckDB does not know fails there, with DuckDB's message.
Comments, string literals and quoted names are never rewritten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import decimal
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

# DuckDB macros standing for BigQuery functions whose DuckDB namesakes behave otherwise.
MACROS = (
    "CREATE OR REPLACE TEMP MACRO bq_json_value(j, p) AS "
    "CASE WHEN json_type(j, p) IN ('OBJECT', 'ARRAY') THEN NULL ELSE json_extract_string(j, p) END",
    "CREATE OR REPLACE TEMP MACRO bq_json_query(j, p) AS CAST(json_extract(j, p) AS VARCHAR)",
    "CREATE OR REPLACE TEMP MACRO bq_json_query_array(j, p) AS "
    "CASE WHEN json_type(j, p) = 'ARRAY' THEN CAST(json_extract(j, p || '[*]') AS VARCHAR[]) END",
    "CREATE OR REPLACE TEMP MACRO bq_unix_seconds(t) AS CAST(floor(epoch(t)) AS BIGINT)",
)
_FUNCTIONS = {"SAFE_CAST": "TRY_CAST", "JSON_VALUE": "bq_json_value", "JSON_QUERY": "bq_json_query",
              "JSON_QUERY_ARRAY": "bq_json_query_array", "UNIX_SECONDS": "bq_unix_seconds"}
_TYPES = {"FLOAT64": "DOUBLE", "TIMESTAMP": "TIMESTAMPTZ", "NUMERIC": "DECIMAL(38, 9)"}
_TOKEN = re.compile(r"""
    (?P<comment>--[^\n]*)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<table>`[^`]*`)
  | (?P<parameter>@[A-Za-z_]\w*)
  | (?P<word>[A-Za-z_]\w*)
  | (?P<space>\s+)
  | (?P<other>.)
""", re.X | re.S)
# How long a connection waits for another process holding a project's file (DuckDB locks the file).
LOCK_WAIT_SECONDS = 60.0


class TranslationError(ValueError):
    """A BigQuery construct the translation does not handle; the message says which."""


def _tokens(sql: str) -> list[tuple[str, str]]:
    return [(match.lastgroup, match.group()) for match in _TOKEN.finditer(sql)]


def _next(tokens: list[tuple[str, str]], start: int) -> int:
    """The index of the first token at or after `start` that is not a space or comment (len: none)."""
    while start < len(tokens) and tokens[start][0] in ("space", "comment"):
        start += 1
    return start


def _closing(tokens: list[tuple[str, str]], opening: int) -> int:
    """The index of the parenthesis or bracket that closes the one at `opening`."""
    pairs = {"(": ")", "[": "]"}
    wanted, depth = pairs[tokens[opening][1]], 0
    for index in range(opening, len(tokens)):
        text = tokens[index][1]
        if tokens[index][0] == "other" and text == tokens[opening][1]:
            depth += 1
        elif tokens[index][0] == "other" and text == wanted:
            depth -= 1
            if depth == 0:
                return index
    raise TranslationError(f"unbalanced {tokens[opening][1]!r} in the query")


def _word(token: tuple[str, str], *words: str) -> bool:
    return token[0] == "word" and token[1].upper() in words


class _Translator:
    def __init__(self, tables: Mapping[str, str]) -> None:
        self.tables = tables
        self.unnests = 0

    def table(self, quoted: str) -> str:
        name = quoted.strip("`")
        if name in self.tables:
            return self.tables[name]
        parts = name.split(".")
        if len(parts) not in (2, 3) or not all(parts):
            raise TranslationError(f"table {quoted}: expected `project.dataset.table` (or `project.dataset`)")
        return ".".join('"' + part.replace('"', '""') + '"' for part in parts)

    def run(self, tokens: list[tuple[str, str]]) -> str:
        out: list[str] = []
        index = 0
        while index < len(tokens):
            kind, text = tokens[index]
            after = _next(tokens, index + 1)
            following = tokens[after] if after < len(tokens) else ("", "")
            if kind == "table":
                out.append(self.table(text))
            elif kind == "parameter":
                out.append("$" + text[1:])
            elif _word(tokens[index], "UNNEST") and following == ("other", "("):
                index = self.unnest(tokens, index, after, out)
                continue
            elif kind == "other" and text == "[" and _word(following, "SAFE_OFFSET", "OFFSET") \
                    and (opening := _next(tokens, after + 1)) < len(tokens) and tokens[opening][1] == "(":
                closing = _closing(tokens, opening)
                bracket = _next(tokens, closing + 1)
                if bracket >= len(tokens) or tokens[bracket][1] != "]":
                    raise TranslationError("expected ] after [OFFSET(...)")
                out.append(f"[({self.run(tokens[opening + 1:closing])}) + 1]")
                index = bracket + 1
                continue
            elif kind == "word" and text.upper() in _FUNCTIONS and following == ("other", "("):
                out.append(_FUNCTIONS[text.upper()])
            elif kind == "word" and text.upper() in _TYPES and following != ("other", "("):
                out.append(_TYPES[text.upper()])
            elif _word(tokens[index], "ARRAY") and following == ("other", "<"):
                closing = next((at for at in range(after, len(tokens)) if tokens[at] == ("other", ">")), None)
                if closing is None:
                    raise TranslationError("ARRAY< without its closing >")
                out.append(f"{self.run(tokens[after + 1:closing]).strip()}[]")
                index = closing + 1
                continue
            else:
                out.append(text)
            index += 1
        return "".join(out)

    def unnest(self, tokens: list[tuple[str, str]], start: int, opening: int, out: list[str]) -> int:
        """`UNNEST(a) [AS v] [WITH OFFSET [AS o]]`: returns the index after what it consumed."""
        closing = _closing(tokens, opening)
        array = self.run(tokens[opening + 1:closing])
        position = _next(tokens, closing + 1)
        alias, after_alias = None, closing + 1
        if position < len(tokens) and _word(tokens[position], "AS"):
            alias_at = _next(tokens, position + 1)
            alias, after_alias = tokens[alias_at][1], alias_at + 1
        elif position < len(tokens) and tokens[position][0] == "word" and not _word(
                tokens[position], "WITH", "WHERE", "ON", "JOIN", "LEFT", "CROSS", "INNER", "GROUP", "ORDER"):
            alias, after_alias = tokens[position][1], position + 1
        with_at = _next(tokens, after_alias)
        offset_at = _next(tokens, with_at + 1)
        if not (with_at < len(tokens) and _word(tokens[with_at], "WITH") and offset_at < len(tokens)
                and _word(tokens[offset_at], "OFFSET")):
            if alias is None:
                out.append(f"UNNEST({array})")
            else:  # BigQuery's alias names the value; DuckDB's would name a table of one struct column
                self.unnests += 1
                out.append(f"UNNEST({array}) AS _bq_unnest_{self.unnests}({alias})")
            return after_alias
        if alias is None:
            raise TranslationError("UNNEST(...) WITH OFFSET needs an alias for the value: UNNEST(a) AS v WITH OFFSET")
        position = _next(tokens, offset_at + 1)
        offset_name = "offset"
        if position < len(tokens) and _word(tokens[position], "AS"):
            name_at = _next(tokens, position + 1)
            offset_name, position = tokens[name_at][1], name_at + 1
        elif position < len(tokens) and tokens[position][0] == "word" and not _word(
                tokens[position], "WHERE", "ON", "JOIN", "LEFT", "CROSS", "INNER", "GROUP", "ORDER"):
            offset_name, position = tokens[position][1], position + 1
        self.unnests += 1
        inner = f"_bq_unnest_{self.unnests}"
        out.append(f"LATERAL (SELECT {inner}.v AS {alias}, {inner}.o - 1 AS {offset_name} "
                   f"FROM UNNEST({array}) WITH ORDINALITY AS {inner}(v, o)) AS {inner}_rows")
        return position


def translate(sql: str, tables: Mapping[str, str] | None = None) -> str:
    """`sql` in BigQuery's dialect as DuckDB runs it; `tables` maps `project.dataset.table` names to DuckDB
    relations (default: the table in the project's attached database)."""
    return _Translator(tables or {}).run(_tokens(sql))


def referenced_projects(sql: str) -> set[str]:
    """The projects of every `project.dataset.table` the query names."""
    return {text.strip("`").split(".")[0] for kind, text in _tokens(sql) if kind == "table" and "." in text}


def _attach(connection, project: str, local_dir: Path | None) -> None:
    from batch_prediction.local_bigquery import database_path

    path = database_path(project, local_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            connection.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS \"{project}\"")
            return
        except Exception as error:  # duckdb.IOException: another process holds the file for the moment
            if "lock" not in str(error).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@contextlib.contextmanager
def connected(projects: Sequence[str], local_dir: Path | None = None) -> Iterator[Any]:
    """An in-memory DuckDB with each project's database attached under its own name, the macros installed,
    and instants in UTC. Closed (and every file released) after the block."""
    import duckdb

    connection = duckdb.connect()
    try:
        connection.execute("SET TimeZone = 'UTC'")
        for project in sorted(set(projects)):
            _attach(connection, project, local_dir)
        for macro in MACROS:
            connection.execute(macro)
        yield connection
    finally:
        connection.close()


@dataclasses.dataclass(frozen=True)
class QueryResult:
    names: list[str]
    types: list[str]  # DuckDB's type names: BIGINT, DOUBLE, VARCHAR[], TIMESTAMP WITH TIME ZONE, ...
    rows: list[tuple]
    changed: int | None = None  # rows an INSERT, UPDATE or DELETE changed


def run(connection, sql: str, parameters: Mapping[str, Any] | None = None,
        tables: Mapping[str, str] | None = None) -> QueryResult:
    """Runs a BigQuery-dialect query (or statement) on `connection`."""
    translated = translate(sql, tables)
    cursor = connection.execute(translated, dict(parameters or {}))
    if cursor.description is None:
        return QueryResult([], [], [])
    names, types = [column[0] for column in cursor.description], [str(column[1]) for column in cursor.description]
    rows = cursor.fetchall()
    statement = next((text.upper() for kind, text in _tokens(sql) if kind == "word"), "")
    if statement in ("INSERT", "UPDATE", "DELETE", "MERGE") and names == ["Count"]:
        return QueryResult([], [], [], int(rows[0][0]) if rows else 0)
    return QueryResult(names, types, rows)


def python_value(value: Any) -> Any:
    """A DuckDB result value as plain JSON-able Python (decimals as floats, instants in UTC)."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(datetime.UTC)
    return value
