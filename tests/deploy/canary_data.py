"""Made-up canary evidence for fast tests: request-log rows in Vertex's columns (written where the local
endpoint writes its log) and labelled feedback, for models of a chosen quality."""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from contract.model_inputs import INSTANCE_ID_KEY, PROBABILITY_OUTPUT
from deploy.decision import StepStats
from deploy.local_evidence import DEFAULT_TABLES, DuckDBRunner, write_feedback
from deploy.plan import Deployed
from deploy.rollout import RolloutState
from registry.model_registry import CHALLENGER, CHAMPION, LocalModelRegistry

_FILES = itertools.count(1)


def log_row(deployed_id: str, when: float, instances: list[dict], probabilities: list[float],
            per_instance: bool = False, request_id: int = 0) -> dict:
    """One logged request: the payloads as one whole body (the local endpoint's form), or one string per
    instance and per prediction (the other form Vertex's columns allow)."""
    predictions = [{PROBABILITY_OUTPUT: p} for p in probabilities]
    request = [json.dumps(i) for i in instances] if per_instance else [json.dumps({"instances": instances})]
    response = [json.dumps(p) for p in predictions] if per_instance else [json.dumps({"predictions": predictions})]
    return {"endpoint": "local", "deployed_model_id": deployed_id,
            "logging_time": datetime.datetime.fromtimestamp(when, datetime.UTC).isoformat(),
            "request_id": str(request_id), "request_payload": request, "response_payload": response}


def write_log(folder: Path, rows: Iterable[dict], cut_last_line: bool = False) -> Path:
    """A new log file after the existing ones, as the router names them."""
    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(folder.glob("requests-*.jsonl"))
    number = int(existing[-1].name[9:15]) + 1 if existing else next(_FILES)
    path = folder / f"requests-{number:06d}.jsonl"
    text = "".join(json.dumps(row) + "\n" for row in rows)
    path.write_text(text[:-20] if cut_last_line else text)
    return path


class Traffic:
    """Requests split at random between deployed models, each answered by a model of its own quality, logged
    and (a share of them) labelled. Quality: `noise` added to a fair classifier's logit (0: as good as the
    champion's), `squeeze` pulls its answers towards 0.5 (another distribution, same ranking)."""

    def __init__(self, runner: DuckDBRunner, seed: int = 1) -> None:
        self.runner = runner
        self.generator = np.random.default_rng(seed)
        self.sent = 0

    def draw(self, split: dict[str, int], requests: int, quality: dict[str, dict] | None = None,
             labelled_share: float = 1.0, spread_seconds: float = 0.0) -> tuple[dict[str, int], list, list]:
        """(requests per deployed model, their log rows, the feedback rows of the labelled share)."""
        quality = quality or {}
        ids = list(split)
        chosen = self.generator.choice(ids, size=requests, p=[split[i] / 100 for i in ids])
        labels = (self.generator.random(requests) < 0.4).astype(int)
        base = np.where(labels == 1, 1.5, -1.5) + self.generator.normal(0, 1.3, requests)
        now = time.time()
        rows, feedback, counts = [], [], dict.fromkeys(ids, 0)
        for index in range(requests):
            deployed_id = str(chosen[index])
            counts[deployed_id] += 1
            model = quality.get(deployed_id, {})
            logit = base[index] + self.generator.normal(0, model.get("noise", 0.0))
            probability = float(0.5 + (1 / (1 + np.exp(-logit)) - 0.5) * (1 - model.get("squeeze", 0.0)))
            instance_id = f"t-{self.sent}"
            self.sent += 1
            when = now - spread_seconds + spread_seconds * index / requests
            rows.append(log_row(deployed_id, when, [{"trip_miles": 1.0, INSTANCE_ID_KEY: instance_id}], [probability],
                                request_id=self.sent))
            if self.generator.random() < labelled_share:
                feedback.append({"instance_id": instance_id, "label": int(labels[index]), "feedback_time": now})
        return counts, rows, feedback

    def send(self, split: dict[str, int], requests: int, quality: dict[str, dict] | None = None,
             labelled_share: float = 1.0, spread_seconds: float = 0.0) -> dict[str, int]:
        """Draws requests, logs them where the local endpoint logs, writes their labels: per model, how many."""
        counts, rows, feedback = self.draw(split, requests, quality, labelled_share, spread_seconds)
        write_log(self.runner.request_log_dir, rows)
        write_feedback(self.runner, feedback, time.time(), require_logged=False)
        return counts


class SimulatedEndpoint:
    """An endpoint held in memory, the only stand-in of these tests: its split (Vertex's rules: sums to 100, no
    undeploy with traffic), journal, rollout state and lock. The registry is a real local one, the evidence
    the real SQL on DuckDB over made-up log rows, and the step's requests, errors and latency what the test
    sets in `stats` (as the router or Cloud Monitoring would report them)."""

    def __init__(self, root: Path, model_name: str = "demo-taxi", canary_percent: int = 10) -> None:
        self.model_name = model_name
        self.where = f"simulated endpoint {root.name}"
        self.registry = LocalModelRegistry(root / "registry")
        model_dir = root / "model"
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "saved_model.pb").write_text("not a model: nothing serves here")
        self.registry.register(model_name, str(model_dir), {}, (CHALLENGER, CHAMPION))
        self.registry.register(model_name, str(model_dir), {}, (CHALLENGER,))
        self.split = {"1": 100 - canary_percent, "2": canary_percent}
        self.versions = {"1": "1", "2": "2"}
        self.journal: dict | None = None
        self.state: RolloutState | None = RolloutState.begin("2", time.time())
        self.stats: dict = {}
        self.splits: list[dict[str, int]] = []  # every split the endpoint was set to
        self.runner = DuckDBRunner(DEFAULT_TABLES, root / "log", root)
        self._lock = threading.Lock()

    def live(self) -> list[Deployed]:
        return [Deployed(deployed_id, self.versions[deployed_id], percent)
                for deployed_id, percent in self.split.items()]

    def update_split(self, split) -> None:
        assert sum(split.values()) == 100 and set(split) <= set(self.split), split
        self.split = {deployed_id: split.get(deployed_id, 0) for deployed_id in self.split}
        self.splits.append(dict(self.split))

    def undeploy(self, deployed_id: str) -> None:
        assert not self.split[deployed_id], "Vertex refuses to undeploy a model that has traffic"
        del self.split[deployed_id]

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._lock:
            yield

    def read_journal(self):
        return self.journal

    def write_journal(self, transition) -> None:
        self.journal = dict(transition)

    def clear_journal(self) -> None:
        self.journal = None

    def start_window(self) -> None:
        self.stats = {}

    def read_rollout(self):
        return self.state

    def write_rollout(self, state) -> None:
        self.state = state

    def step_stats(self, live, since, now):
        return self.stats

    def query_runner(self, tables=None):
        return self.runner

    def add_step_traffic(self, counts: dict[str, int], errors: dict[str, int] | None = None,
                         p99_ms: dict[str, float] | None = None) -> None:
        """Requests counted at the current step, as the router or Cloud Monitoring would (added up)."""
        for deployed_id, requests in counts.items():
            old = self.stats.get(deployed_id, StepStats())
            failed = old.errors + (errors or {}).get(deployed_id, 0)
            self.stats[deployed_id] = StepStats(old.requests + requests, failed, 5.0,
                                                (p99_ms or {}).get(deployed_id, 20.0))


class VertexRequestLogging:
    """What Vertex's request-response logging does for the Vertex stand-in (tests/deploy/
    vertex_endpoint_stand_in.FakeVertex.request_logging): each answered request becomes a row of the log table,
    in the BigQuery stand-in's files, in the one-string-per-instance form (the local endpoint logs the other)."""

    def __init__(self, local_dir: Path, table: str) -> None:
        from deploy.evidence import REQUEST_LOG_SCHEMA
        from storage import bigquery_dialect

        self.local_dir, self.table = local_dir, table
        self.rows: list[dict] = []
        project, dataset, _ = table.split(".")
        with bigquery_dialect.connected([project], local_dir) as connection:
            bigquery_dialect.run(connection, f"CREATE SCHEMA IF NOT EXISTS `{project}.{dataset}`")
            bigquery_dialect.run(connection, f"CREATE TABLE IF NOT EXISTS `{table}` ({REQUEST_LOG_SCHEMA})")

    def __call__(self, endpoint: str, deployed_id: str, instances: list, predictions: list) -> None:
        from storage import bigquery_dialect

        row = log_row(deployed_id, time.time(), instances, [p[PROBABILITY_OUTPUT] for p in predictions],
                      per_instance=True, request_id=len(self.rows) + 1)
        self.rows.append(row)
        with bigquery_dialect.connected([self.table.split(".")[0]], self.local_dir) as connection:
            bigquery_dialect.run(connection, f"INSERT INTO `{self.table}` VALUES (@endpoint, @deployed, @at, @id, "
                                             "@request, @response)",
                                 {"endpoint": endpoint, "deployed": deployed_id,
                                  "at": datetime.datetime.fromisoformat(row["logging_time"]), "id": len(self.rows),
                                  "request": row["request_payload"], "response": row["response_payload"]})
