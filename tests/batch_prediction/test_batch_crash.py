"""A run killed mid-write (SIGKILL of a real child process) leaves no visible partial output:
the previous output of the run id stays whole, and the next run cleans up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest
from batch_helpers import keyed, sample_rows, write_csv

from batch_prediction.local_bigquery import database_path
from batch_prediction.output import output_files, read_manifest
from batch_prediction.predictor import ModelIdentity, predict_source
from contract.paths import PROJECT_ROOT

IDENTITY = ModelIdentity("local/registry/taxi", "1")

# The child scores the source with the real predictor, says so after its first write, then hangs mid-run.
CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from batch_prediction import predictor
    from serving.model import load_model

    model_dir, source, destination, local_dir = sys.argv[1:5]
    publisher_class = predictor.open_publisher

    def open_publisher(*args, **kwargs):
        publisher = publisher_class(*args, **kwargs)
        write = publisher.write

        def write_then_hang(table, batch):
            write(table, batch)
            print("written", flush=True)
            time.sleep(600)
        publisher.write = write_then_hang
        return publisher

    predictor.open_publisher = open_publisher
    predictor.predict_source(load_model(model_dir), predictor.ModelIdentity("crashing", "2"), source, destination,
                             "nightly", key_field="trip_id", chunk_rows=10, local_dir=Path(local_dir))
""")


def kill_mid_write(model_dir: Path, source: Path, destination: str, local_dir: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(model_dir), str(source), destination, str(local_dir)],
                             stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT,
                             env=os.environ | {"PYTHONPATH": str(PROJECT_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        assert child.stdout.readline().strip() == "written", "the child never wrote"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        child.kill()


@pytest.mark.parametrize("kind", ["folder", "bq"])
def test_kill_mid_write_leaves_the_previous_output_whole(kind, taxi_model, taxi_model_dir, tmp_path):
    header, rows = keyed(*sample_rows(40))
    source = write_csv(tmp_path / "in" / "part.csv", header, rows[:30]).parent
    destination = str(tmp_path / "out") if kind == "folder" else "bq://local-project.scores"
    predict_source(taxi_model, IDENTITY, str(source), destination, "nightly", key_field="trip_id",
                   local_dir=tmp_path)
    write_csv(source / "part.csv", header, rows)  # the rerun would write 40 rows

    kill_mid_write(taxi_model_dir, source, destination, tmp_path)

    if kind == "folder":
        assert [path.name for path in (tmp_path / "out").iterdir()] == ["nightly"]
        assert any(path.name.startswith(".batch-staging.out.nightly.") for path in tmp_path.iterdir())
        assert read_manifest(destination, "nightly")["rows"]["predictions"] == 30
        assert len(output_files(destination, "nightly")) == 1
        seen = duckdb.sql(f"SELECT count(*), any_value(model_version) FROM '{tmp_path}/out/**/*.parquet'").fetchone()
        assert seen == (30, "1")  # a glob over the folder sees the old run only: staging is hidden
    else:
        with duckdb.connect(str(database_path("local-project", tmp_path))) as connection:
            assert connection.execute("SELECT count(*), any_value(model_version) FROM scores.predictions"
                                      ).fetchone() == (30, "1")

    predict_source(taxi_model, IDENTITY, str(source), destination, "nightly", key_field="trip_id", local_dir=tmp_path)
    if kind == "folder":
        assert not [path for path in tmp_path.iterdir() if path.name.startswith(".batch-staging")]  # cleaned up
        assert read_manifest(destination, "nightly")["rows"]["predictions"] == 40
