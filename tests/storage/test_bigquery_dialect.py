"""BigQuery's dialect on DuckDB (storage/bigquery_dialect.py): each translation rule, as text and by the rows
DuckDB then returns, which are the ones BigQuery's documentation gives for the same query."""

from __future__ import annotations

import datetime

import pytest

from storage.bigquery_dialect import TranslationError, connected, referenced_projects, run, translate

UTC = datetime.UTC


@pytest.fixture
def duck(tmp_path):
    with connected(["my-project"], tmp_path) as connection:
        yield connection


def _one(connection, sql: str, **parameters):
    return run(connection, sql, parameters).rows


def test_tables_parameters_and_types_are_renamed_outside_strings_and_comments():
    sql = ("SELECT SAFE_CAST(x AS FLOAT64), CAST(t AS TIMESTAMP), '@no `a.b.c` FLOAT64' -- SAFE_CAST @x\n"
           "FROM `p-1.d.t` WHERE t >= @start")
    assert translate(sql) == ("SELECT TRY_CAST(x AS DOUBLE), CAST(t AS TIMESTAMPTZ), '@no `a.b.c` FLOAT64' "
                              '-- SAFE_CAST @x\nFROM "p-1"."d"."t" WHERE t >= $start')
    assert translate("SELECT * FROM `p.d.log`", {"p.d.log": "read_json('x')"}) == "SELECT * FROM read_json('x')"
    assert referenced_projects(sql + " JOIN `q.d.t`") == {"p-1", "q"}
    with pytest.raises(TranslationError, match="expected `project.dataset.table`"):
        translate("SELECT * FROM `t`")


def test_json_functions_answer_as_bigquerys_do(duck):
    # JSON_VALUE: a scalar as text, NULL for an object, an array, JSON null or a missing path.
    row = _one(duck, """SELECT JSON_VALUE('{"a": "x", "n": 1.5, "o": {"b": 1}, "l": [1], "z": null}', '$.a'),
                               JSON_VALUE('{"n": 1.5}', '$.n'), JSON_VALUE('{"o": {"b": 1}}', '$.o'),
                               JSON_VALUE('{"l": [1]}', '$.l'), JSON_VALUE('{"z": null}', '$.z'),
                               JSON_VALUE('{}', '$.missing')""")
    assert row == [("x", "1.5", None, None, None, None)]
    # JSON_QUERY: JSON text; JSON_QUERY_ARRAY: each element as JSON text, NULL when it is not an array.
    row = _one(duck, """SELECT JSON_QUERY('{"o": {"b": 1}}', '$.o'), JSON_QUERY('{}', '$.o'),
                               JSON_QUERY_ARRAY('{"l": [{"p": 1}, 2, "s"]}', '$.l'),
                               JSON_QUERY_ARRAY('{"l": 1}', '$.l')""")
    assert row == [('{"b":1}', None, ['{"p":1}', "2", '"s"'], None)]


def test_offsets_are_zero_based_as_in_bigquery(duck):
    assert translate("a[SAFE_OFFSET(i + 1)]") == "a[(i + 1) + 1]"
    assert _one(duck, "SELECT ['a', 'b'][SAFE_OFFSET(0)], ['a', 'b'][OFFSET(1)], ['a', 'b'][SAFE_OFFSET(2)]") == [
        ("a", "b", None)]
    rows = _one(duck, "SELECT v, o FROM (SELECT ['x', 'y', 'z'] AS a) AS t, UNNEST(t.a) AS v WITH OFFSET AS o "
                      "ORDER BY o")
    assert rows == [("x", 0), ("y", 1), ("z", 2)]
    # An offset indexes a second array the BigQuery way: position 1 of one is position 1 of the other.
    rows = _one(duck, "SELECT v, t.b[SAFE_OFFSET(o)] FROM (SELECT ['x', 'y'] AS a, ['X', 'Y'] AS b) AS t, "
                      "UNNEST(t.a) AS v WITH OFFSET o ORDER BY v")
    assert rows == [("x", "X"), ("y", "Y")]
    assert _one(duck, "SELECT count(*) FROM (SELECT [1, 2, 3] AS a) AS t, UNNEST(t.a) AS v") == [(3,)]
    assert _one(duck, "SELECT v FROM UNNEST(@ids) AS v WHERE v <> 'b' ORDER BY v", ids=["a", "b", "c"]) == [
        ("a",), ("c",)]
    assert translate("FROM UNNEST(x) AS v\nWHERE v") == "FROM UNNEST(x) AS _bq_unnest_1(v)\nWHERE v"
    with pytest.raises(TranslationError, match="needs an alias"):
        translate("SELECT 1 FROM t, UNNEST(a) WITH OFFSET")
    with pytest.raises(TranslationError, match="unbalanced"):
        translate("SELECT UNNEST((a)")


def test_timestamps_are_instants_and_parameters_are_named(duck):
    start = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    row = _one(duck, "SELECT UNIX_SECONDS(@start), CAST(@start AS TIMESTAMP) < @later, SAFE_CAST('x' AS INT64)",
               start=start, later=start + datetime.timedelta(seconds=1))
    assert row == [(int(start.timestamp()), True, None)]


def test_statements_run_against_each_projects_own_database(tmp_path):
    with connected(["my-project", "other-project"], tmp_path) as duck:
        run(duck, "CREATE SCHEMA IF NOT EXISTS `my-project.canary`")
        run(duck, "CREATE SCHEMA `other-project.canary`")
        run(duck, "CREATE TABLE IF NOT EXISTS `my-project.canary.feedback` (instance_id STRING, label INT64, "
                  "feedback_time TIMESTAMP)")
        inserted = run(duck, "INSERT INTO `my-project.canary.feedback` (instance_id, label, feedback_time) "
                             "VALUES (@id, @label, @at)", {"id": "r-1", "label": 1,
                                                           "at": datetime.datetime(2026, 1, 1, tzinfo=UTC)})
        result = run(duck, "SELECT instance_id, label, feedback_time FROM `my-project.canary.feedback`")
        run(duck, "CREATE TABLE `other-project.canary.log` (payload ARRAY<STRING>, n NUMERIC)")
        typed = run(duck, "SELECT payload, n FROM `other-project.canary.log`")
    assert inserted.changed == 1 and result.names == ["instance_id", "label", "feedback_time"]
    assert result.types == ["VARCHAR", "BIGINT", "TIMESTAMP WITH TIME ZONE"]
    assert result.rows == [("r-1", 1, datetime.datetime(2026, 1, 1, tzinfo=UTC))]
    assert typed.types == ["VARCHAR[]", "DECIMAL(38,9)"]
    assert (tmp_path / "bigquery" / "my-project.duckdb").exists() and (tmp_path / "bigquery" / "other-project.duckdb"
                                                                        ).exists()
