"""The evidence SQL on made-up log rows (deploy/evidence.py on DuckDB): both payload forms, requests of several
instances, a line a crash cut short, the window, the latest label winning; and the feedback writer, which
refuses, naming them, rows it cannot take, and writes nothing then."""

from __future__ import annotations

import json
import time

import pytest

from deploy import cli
from deploy.evidence import read_logged_predictions
from deploy.local_evidence import DEFAULT_TABLES, DuckDBRunner, FeedbackError, write_feedback
from tests.deploy.canary_data import log_row, write_log


@pytest.fixture
def runner(tmp_path):
    return DuckDBRunner(DEFAULT_TABLES, tmp_path / "endpoint/request_log", tmp_path)


def _labels(runner) -> list[tuple]:
    return [(row["instance_id"], row["label"]) for row in runner.run(
        "SELECT instance_id, label FROM `local-mlops.canary.feedback` ORDER BY instance_id, feedback_time")]


def test_both_payload_forms_several_instances_a_cut_line_and_the_window(runner):
    now = time.time()
    write_log(runner.request_log_dir, [
        log_row("1", now - 10, [{"instance_id": "a"}, {"instance_id": "b"}, {}], [0.05, 0.55, 0.97]),  # whole bodies
        log_row("2", now - 5, [{"instance_id": "c"}, {"instance_id": "d"}], [0.42, 0.43], per_instance=True),
        log_row("2", now - 7200, [{"instance_id": "old"}], [0.9]),  # before the window
    ])
    write_log(runner.request_log_dir, [log_row("2", now - 1, [{"instance_id": "cut"}], [0.1])], cut_last_line=True)
    write_feedback(runner, [{"instance_id": "a", "label": 1, "feedback_time": now - 3},
                            {"instance_id": "a", "label": 0, "feedback_time": now - 2},  # the latest wins
                            {"instance_id": "c", "label": 1}, {"instance_id": "old", "label": 1},
                            {"instance_id": "nowhere", "label": 1}], now, require_logged=False)
    logged, bucket = read_logged_predictions(runner, DEFAULT_TABLES, now - 3600, now + 1)
    champion, canary = logged["1"], logged["2"]
    assert bucket == 60 and champion.predictions == 3 and canary.predictions == 2  # the cut line and "old" left out
    assert champion.histogram[1] == champion.histogram[11] == champion.histogram[19] == 1
    assert canary.histogram[8] == 2 and sum(champion.traffic.values()) == 3
    assert (list(champion.probabilities), list(champion.labels)) == ([0.05], [0.0])
    assert (list(canary.probabilities), list(canary.labels)) == ([0.42], [1.0])


def test_the_feedback_writer_refuses_what_it_cannot_take_and_writes_nothing(runner):
    now = time.time()
    write_log(runner.request_log_dir, [log_row("1", now, [{"instance_id": "r-1"}, {"instance_id": "r-2"}], [0.2, 0.8])])
    with pytest.raises(FeedbackError, match=r"1 feedback row\(s\) match no request in the endpoint's log .*: r-9; "
                                            r"expected the instance_id a logged request carried. Nothing was written"):
        write_feedback(runner, [{"instance_id": "r-1", "label": 1}, {"instance_id": "r-9", "label": 0}], now)
    for rows, message in (([{"instance_id": "r-1", "label": 2}], "row 1 \\(r-1\\): label 2 is not 0 or 1"),
                          ([{"instance_id": "", "label": 1}], "row 1: instance_id '' is not a non-empty string"),
                          ([{"instance_id": "r-2", "label": 1, "feedback_time": "yesterday"}],
                           "feedback_time 'yesterday' is not epoch seconds or an ISO 8601 time")):
        with pytest.raises(FeedbackError, match=message):
            write_feedback(runner, rows, now)
    assert _labels(runner) == []
    assert write_feedback(runner, [{"instance_id": "r-1", "label": 1}, {"instance_id": "r-2", "label": 0,
                                                                         "feedback_time": "2026-01-01T00:00:00Z"}],
                          now) == 2
    assert _labels(runner) == [("r-1", 1), ("r-2", 0)]


def test_the_feedback_command_says_what_was_wrong_and_changes_nothing(tmp_path, runner, capsys):
    write_log(runner.request_log_dir, [log_row("1", time.time(), [{"instance_id": "r-1"}], [0.2])])
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps(row) + "\n" for row in ({"instance_id": "r-1", "label": 1},
                                                                 {"instance_id": "x", "label": 0})))
    registry = str(tmp_path / "registry")
    assert cli.main(["feedback", str(labels), "--registry-uri", registry]) == 1
    assert "match no request in the endpoint's log" in capsys.readouterr().err and _labels(runner) == []
    labels.write_text("not json\n")
    assert cli.main(["feedback", str(labels), "--registry-uri", registry]) == 1
    assert "line 1 is not JSON" in capsys.readouterr().err
    labels.write_text(json.dumps({"instance_id": "r-1", "label": 1}) + "\n")
    assert cli.main(["feedback", str(labels), "--registry-uri", registry]) == 0
    assert "1 feedback row(s) written to bq://local-mlops.canary.feedback" in capsys.readouterr().out
    assert _labels(runner) == [("r-1", 1)]
