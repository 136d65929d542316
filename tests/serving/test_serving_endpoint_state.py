"""The endpoint's rules and state file, without HTTP: Vertex's split rules and atomic changes."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from serving_helpers import PROJECT_ROOT, wait_until

from serving import endpoint
from serving.cli import main as cli_main
from serving.cli import parse_split
from serving.endpoint import (
    EndpointError,
    EndpointState,
    EndpointStore,
    UndeployRefused,
    plan_deploy,
    plan_undeploy,
    plan_update_split,
)
from serving.router import routing_table
from storage import local_files


def two_models() -> EndpointState:
    state, _ = plan_deploy(EndpointState(), "/models/a", "champion")
    state, _ = plan_deploy(state, "/models/b", "canary", {"0": 10, "1": 90})
    return state


def test_first_deploy_takes_all_traffic_and_ids_count_up() -> None:
    state, first = plan_deploy(EndpointState(), "/models/a", "champion")
    state, second = plan_deploy(state, "/models/b", "")

    assert (first, second) == ("1", "2")
    # Without a split, a model deployed next to others gets no traffic (Vertex's REST default).
    assert state.traffic_split == {"1": 100, "2": 0}
    assert state.deployed_model("2").display_name == "model-2"


def test_deploy_with_a_split_names_the_new_model_0() -> None:
    state = two_models()

    assert state.traffic_split == {"1": 90, "2": 10}
    assert [deployed.model_uri for deployed in state.deployed_models] == ["/models/a", "/models/b"]


@pytest.mark.parametrize(("split", "message"), [
    ({"0": 10, "1": 80}, "percentages must sum to 100, got 90"),
    ({"0": 10, "7": 90}, "traffic split key '7' is not a deployed model id"),
    ({"0": 10.0, "1": 90}, "value for '0' must be a whole percent 0-100, got 10.0"),
    ({"0": True, "1": 99}, "value for '0' must be a whole percent 0-100, got True"),
    ({"0": -10, "1": 110}, "value for '0' must be a whole percent 0-100, got -10"),
    ({}, "a traffic split is a non-empty map"),
])
def test_deploy_refuses_splits_vertex_refuses(split: dict[str, object], message: str) -> None:
    state, _ = plan_deploy(EndpointState(), "/models/a", "champion")

    with pytest.raises(EndpointError, match=message):
        plan_deploy(state, "/models/b", "canary", split)  # type: ignore[arg-type]


def test_update_takes_the_whole_split_and_never_0() -> None:
    state = two_models()

    assert plan_update_split(state, {"2": 100}).traffic_split == {"1": 0, "2": 100}
    with pytest.raises(EndpointError, match=r"key '0' is not a deployed model id \(\"0\" names the model"):
        plan_update_split(state, {"0": 50, "1": 50})
    with pytest.raises(EndpointError, match="must sum to 100, got 50"):
        plan_update_split(state, {"1": 50})
    with pytest.raises(EndpointError, match="has no deployed models"):
        plan_update_split(EndpointState(), {"1": 100})


def test_undeploy_is_refused_while_the_model_has_traffic() -> None:
    state = two_models()

    with pytest.raises(UndeployRefused, match="deployed model 2 still has 10% of the traffic"):
        plan_undeploy(state, "2")
    with pytest.raises(UndeployRefused, match="still sends 10% to deployed model 2"):
        plan_undeploy(state, "2", {"1": 90, "2": 10})
    with pytest.raises(EndpointError, match="no deployed model '9'"):
        plan_undeploy(state, "9")


def test_undeploy_after_moving_traffic_or_with_a_split_or_of_the_last_model() -> None:
    state = two_models()

    moved = plan_undeploy(plan_update_split(state, {"1": 100}), "2")
    assert moved.ids() == ["1"] and moved.traffic_split == {"1": 100}
    in_one_step = plan_undeploy(state, "1", {"2": 100})
    assert in_one_step.ids() == ["2"] and in_one_step.traffic_split == {"2": 100}
    # As on Vertex, the last model may go with its traffic: the split empties.
    emptied = plan_undeploy(in_one_step, "2")
    assert emptied.ids() == [] and emptied.traffic_split == {}
    # Ids are never reused, so stats and logs of an old id never mix with a new model's.
    assert plan_deploy(emptied, "/models/c", "next")[1] == "3"


def test_store_persists_state_and_refuses_a_corrupt_file(tmp_path: Path) -> None:
    store = EndpointStore(tmp_path)
    store.deploy("/models/a", "champion")
    store.deploy("/models/b", "canary", {"0": 25, "1": 75})

    reread = EndpointStore(tmp_path).read()
    assert reread.traffic_split == {"1": 75, "2": 25} and reread.revision == 2
    assert reread.deployed_model("2").model_uri == "/models/b"

    (tmp_path / endpoint.STATE_FILE).write_text('{"endpoint_id": "local"')
    with pytest.raises(EndpointError, match="is not a valid endpoint state"):
        EndpointStore(tmp_path).read()


def test_a_failed_write_leaves_the_old_state_and_no_temporary_file(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store = EndpointStore(tmp_path)
    store.deploy("/models/a", "champion")
    store.deploy("/models/b", "canary", {"0": 10, "1": 90})
    before = (tmp_path / endpoint.STATE_FILE).read_bytes()

    def fail_mid_write(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(local_files.os, "fsync", fail_mid_write)
    with pytest.raises(OSError, match="disk full"):
        store.update_split({"1": 50, "2": 50})

    assert (tmp_path / endpoint.STATE_FILE).read_bytes() == before
    assert [path.name for path in tmp_path.iterdir() if path.name.endswith(".tmp")] == []


SPLITS = ({"1": 90, "2": 10}, {"1": 10, "2": 90})

# Flips the split as fast as it can until killed.
_FLIPPER = textwrap.dedent("""
    import sys
    from serving.endpoint import EndpointStore
    store = EndpointStore(sys.argv[1])
    splits = ({"1": 90, "2": 10}, {"1": 10, "2": 90})
    print("flipping", flush=True)
    for turn in range(1_000_000):
        store.update_split(splits[turn % 2])
""")


def test_a_crash_mid_update_leaves_the_old_split_or_the_new_one(tmp_path: Path) -> None:
    store = EndpointStore(tmp_path)
    store.deploy("/models/a", "champion")
    store.deploy("/models/b", "canary", {"0": 10, "1": 90})
    rng = random.Random(11)
    seen: Counter[str] = Counter()
    for _ in range(12):
        flipper = subprocess.Popen([sys.executable, "-c", _FLIPPER, str(tmp_path)], cwd=PROJECT_ROOT,
                                   stdout=subprocess.PIPE, text=True)
        try:
            assert flipper.stdout is not None and flipper.stdout.readline() == "flipping\n"
            revision = store.read().revision
            wait_until(lambda revision=revision: store.read().revision > revision + rng.randrange(1, 40), 10,
                       "the flipper to write")
            flipper.send_signal(signal.SIGKILL)
            flipper.wait(timeout=10)
        finally:
            flipper.kill()
            flipper.wait()
        state = store.read()  # a torn file would fail to parse here
        assert state.traffic_split in SPLITS
        seen[json.dumps(state.traffic_split)] += 1
    assert sum(seen.values()) == 12


def test_routing_table_draws_follow_the_split() -> None:
    table = routing_table({"1": 90, "2": 10, "3": 0})
    rng = random.Random(5)

    draws = Counter(table[int(rng.random() * len(table))] for _ in range(100_000))

    assert len(table) == 100 and "3" not in draws
    # Binomial standard deviation at 10% of 100,000 draws is 0.095 points; 0.5 is over 5 of them.
    assert abs(draws["2"] / 100_000 - 0.10) < 0.005


def test_cli_parses_splits_and_names_a_bad_entry() -> None:
    assert parse_split(["1=90", "2=10"]) == parse_split(["1=90,2=10"]) == {"1": 90, "2": 10}
    with pytest.raises(EndpointError, match="split entry '1:90': expected ID=PERCENT"):
        parse_split(["1:90"])
    with pytest.raises(EndpointError, match="deployed model 1 is named twice"):
        parse_split(["1=50", "1=50"])


def test_cli_changes_the_state_directly_while_no_endpoint_serves(demo_model_dir: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    state_dir = str(tmp_path / "endpoint")

    assert cli_main(["--state-dir", state_dir, "deploy", str(demo_model_dir), "--display-name", "champion"]) == 0
    assert cli_main(["--state-dir", state_dir, "deploy", str(demo_model_dir), "--split", "0=30", "1=70"]) == 0
    assert cli_main(["--state-dir", state_dir, "undeploy", "2"]) == 1
    assert "deployed model 2 still has 30% of the traffic" in capsys.readouterr().err
    assert cli_main(["--state-dir", state_dir, "split", "1=100"]) == 0
    assert cli_main(["--state-dir", state_dir, "deploy", str(tmp_path / "nothing")]) == 1
    assert "is not an exported model directory: missing saved_model.pb, input_spec.json" in capsys.readouterr().err
    assert cli_main(["status", "--state-dir", state_dir]) == 0  # accepted after the command too

    status = capsys.readouterr().out
    assert "not serving" in status
    assert [line.split()[:2] for line in status.splitlines()[2:]] == [["1", "100%"], ["2", "0%"]]
