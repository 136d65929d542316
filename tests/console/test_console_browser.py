"""The console in headless Chromium after a local training run (the suite's shared run, tests/conftest.py): the run
list, the run's DAG with each step's state, the model page and the endpoint page show what the state holds; a
click from the run reaches its evaluation report; every page's screenshot shows content. The console serves the
shared state read-only, as `python runner.py console` does."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipelines.run_record import read_run_record
from serving.metrics_log import read_metrics
from tests.conftest import SmallSampleRun
from tests.console.console_helpers import painted_share, pixels_near, running_console

pytestmark = pytest.mark.e2e
# The DAG's colour for a succeeded step (its box's fill), as the console's stylesheet sets it.
SUCCEEDED_FILL = (0xE6, 0xF4, 0xEA)


@pytest.fixture(scope="module")
def console(small_sample_run: SmallSampleRun, tmp_path_factory):
    assert small_sample_run.result.succeeded, "the shared training run failed: nothing to show"
    with running_console(small_sample_run.local, tmp_path_factory.mktemp("console") / "console.log") as served:
        yield served


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def _seconds(text: str) -> float:
    """A duration as the pages write it: `12.3 s` or `2 min 5 s`."""
    match = re.fullmatch(r"(?:(\d+) min )?([\d.]+) s", text.strip())
    assert match, f"not a duration: {text!r}"
    return 60 * int(match.group(1) or 0) + float(match.group(2))


def _screenshot(page, path: Path) -> Path:
    page.screenshot(path=str(path), full_page=True)
    assert painted_share(path) > 0.01, f"{page.url} looks blank"  # a blank page is all background
    return path


def test_the_run_list_shows_the_training_run_as_its_record_holds(console, page, small_sample_run, tmp_path):
    record = read_run_record(small_sample_run.run_dir)
    page.goto(console.url + "/runs")
    row = page.locator(f'tr[data-run="{small_sample_run.run_dir.name}"]')
    cells = row.locator("td").all_inner_texts()
    assert cells[1:3] == ["training", "succeeded"] and record["state"] == "succeeded"
    import datetime

    started = datetime.datetime.fromisoformat(record["started"]).astimezone()
    ended = datetime.datetime.fromisoformat(record["ended"])
    assert cells[3] == f"{started:%Y-%m-%d %H:%M:%S}"
    assert _seconds(cells[4]) == pytest.approx((ended - started).total_seconds(), abs=0.1)
    shown = dict(item.split("=", 1) for item in cells[5].split(", "))
    assert shown == {"data_uri": str(small_sample_run.landing), "dataset_config": small_sample_run.config,
                     "epochs": "15", "batch_size": "32"}  # registry_uri and data_version are local mode's own
    assert cells[6] == "command line"
    _screenshot(page, tmp_path / "runs.png")


def test_the_run_page_draws_each_step_with_its_state_and_opens_the_evaluation_report(console, page, small_sample_run,
                                                                                     tmp_path):
    record = read_run_record(small_sample_run.run_dir)
    page.goto(f"{console.url}/runs/{small_sample_run.run_dir.name}")
    assert page.locator("#run-state").inner_text() == "succeeded"
    nodes = page.locator("svg.dag a.node")
    assert sorted(nodes.evaluate_all("nodes => nodes.map(node => node.dataset.task)")) == sorted(record["steps"])
    # Every executor the compiled template declares ran and is drawn (the snapshot step included).
    template = json.loads((Path(__file__).parents[2] / "compiled" / "training_pipeline.json").read_text())
    assert sorted(record["steps"]) == sorted(name.removeprefix("exec-")
                                             for name in template["deploymentSpec"]["executors"])
    for task, step in record["steps"].items():
        node = page.locator(f'svg.dag a.node[data-task="{task}"]')
        assert "ok" in node.get_attribute("class").split(), task
        state, duration = node.locator("text.detail").text_content().split(" · ")
        assert state == "succeeded" and _seconds(duration) == pytest.approx(step["seconds"], abs=0.05), task
    # The nested deploy pipeline is drawn as a box holding its step, inside the two conditions.
    groups = {text: page.locator("svg.dag g.group", has_text=text) for text in
              ("if blessed", "if deploy", "8. Deploy (nested deploy pipeline)")}
    assert all(group.count() == 1 for group in groups.values())
    nested = groups["8. Deploy (nested deploy pipeline)"].locator("rect").bounding_box()
    deploy = page.locator('svg.dag a.node[data-task="deploy-model"] rect').bounding_box()
    assert nested["x"] < deploy["x"] and deploy["x"] + deploy["width"] < nested["x"] + nested["width"]
    assert nested["y"] < deploy["y"] and deploy["y"] + deploy["height"] < nested["y"] + nested["height"]
    shot = _screenshot(page, tmp_path / "run.png")
    assert pixels_near(shot, SUCCEEDED_FILL) > len(record["steps"]) * 5000  # a green box per step (and badges)

    # A step's box leads to its outputs and its log, which holds what the step printed.
    page.locator('svg.dag a.node[data-task="train-model"]').click()
    assert page.url.endswith("#step-train-model")
    section = page.locator("#step-train-model")
    assert section.is_visible() and "system.Model" in section.inner_text()
    section.locator("a", has_text="log").click()
    assert "Got executor_input" in page.locator("#log").inner_text()

    # From the run to its evaluation report, as a person clicks.
    page.goto(f"{console.url}/runs/{small_sample_run.run_dir.name}")
    page.locator("#reports a.report", has_text="report").click()
    page.wait_for_load_state()
    assert page.url.endswith(f"/files/pipeline_root/{small_sample_run.run_dir.name}/evaluate-model/report.html")
    assert page.title() == f"Evaluation of {small_sample_run.model_name}"
    assert page.locator("svg").count() == 3  # ROC, calibration, AUC per slice: drawn, not shown as text
    _screenshot(page, tmp_path / "report.png")


def test_the_model_page_shows_the_versions_aliases_lineage_and_metrics(console, page, small_sample_run, tmp_path):
    version = json.loads((small_sample_run.local / "registry" / small_sample_run.model_name / "versions/1/version.json"
                          ).read_text())
    page.goto(f"{console.url}/models/{small_sample_run.model_name}")
    row = page.locator('table.versions tr[data-version="1"]')
    cells = row.locator("td").all_inner_texts()
    assert cells[1].split() == ["challenger", "champion"]
    assert cells[3] == version["metadata"]["data_uri"] == str(small_sample_run.landing)
    ingested = json.loads((small_sample_run.run_dir / "ingest-data/executor_output.json").read_text())
    data_version = ingested["artifacts"]["examples"]["artifacts"][0]["metadata"]["data_version"]
    assert cells[4].startswith(data_version)
    assert cells[6] == version["metadata"]["pipeline_run"] == small_sample_run.run_dir.name
    for metric in ("auc", "accuracy", "precision", "recall", "calibration"):
        shown = page.locator(f'table.metrics tr[data-metric="{metric}"] td').nth(1).inner_text()
        assert shown == f"{version['metadata']['metrics'][metric]:.4f}", metric
    _screenshot(page, tmp_path / "model.png")
    row.locator("a", has_text=small_sample_run.run_dir.name).click()
    assert page.url.endswith(f"/runs/{small_sample_run.run_dir.name}")


def test_the_endpoint_page_shows_the_deployed_model_split_and_requests(console, page, small_sample_run, tmp_path):
    endpoint = json.loads((small_sample_run.local / "endpoint/endpoint.json").read_text())
    rows = list(read_metrics(small_sample_run.local / "endpoint"))
    requests = sum(row["requests"] for row in rows if row["deployed_model_id"] == "1")
    assert requests >= 1  # the deploy's smoke test went through the router, which kept it
    page.goto(console.url + "/endpoint")
    deployed = page.locator('#deployed tr[data-deployed="1"] td').all_inner_texts()
    assert deployed[:5] == ["1", endpoint["deployed_models"][0]["display_name"],
                            f"version 1 of {small_sample_run.model_name}", "champion", "100%"]
    assert endpoint["traffic_split"] == {"1": 100}
    assert page.locator("#split").inner_text().strip() == "1 (v1): 100%"
    assert page.locator('#totals tr[data-deployed="1"] td.requests').inner_text() == str(requests)
    assert page.locator('#totals tr[data-deployed="1"] td.errors').inner_text() == "0"
    assert page.locator("#metrics-plot svg").count() == 1
    assert "deploy (first): version 1 as deployed model 1" in page.locator("#history").inner_text()
    shot = _screenshot(page, tmp_path / "endpoint.png")
    assert pixels_near(shot, (0x1F, 0x77, 0xB4), tolerance=30) > 5000  # the split bar and the plot's first series
