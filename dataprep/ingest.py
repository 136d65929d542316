"""Ingest: read every `batch.csv` under `data_uri`, type it, label it, split it.

The roles of TFX ExampleGen: one deterministic train/eval split by a hash of the
data set's split key, so a trip lands in the same split whichever partition or
run it arrives in. Types are inferred from the values (not assumed from the
schema), so that validation sees a type change instead of ingest hiding it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import posixpath
from pathlib import Path

import numpy as np
import pandas as pd

from contract.artifacts import EVAL_FILE, MANIFEST_FILE, TRAIN_FILE
from contract.dataset import BATCH_COLUMN, DatasetConfig
from contract.paths import BATCH_FILE_NAME, PROJECT_ROOT
from storage import uri as storage_uri

SPLIT_COLUMN = "_split"


class IngestError(ValueError):
    """Nothing usable under data_uri; the message says what was looked for."""


@dataclasses.dataclass(frozen=True)
class BatchInfo:
    uri: str
    rows: int
    columns: list[str]


@dataclasses.dataclass(frozen=True)
class IngestSummary:
    data_uri: str
    batches: list[BatchInfo]
    rows: int
    train_rows: int
    eval_rows: int
    label_positive_rate: float

    def counts(self) -> dict[str, float]:
        return {"batches": len(self.batches), "rows": self.rows, "train_rows": self.train_rows,
                "eval_rows": self.eval_rows, "label_positive_rate": round(self.label_positive_rate, 4)}


def _resolved(prefix: str) -> str:
    """A relative local prefix is relative to the project root; gs:// and the mount stand as they are."""
    if storage_uri.is_gcs(storage_uri.canonical(storage_uri.checked(prefix))) or Path(prefix).is_absolute():
        return prefix
    return str((PROJECT_ROOT / prefix).resolve())


def find_batches(data_uri: str) -> list[str]:
    """Every batch.csv under each comma-separated prefix in data_uri (folders, gs:// prefixes or the
    /gcs/ mount; read through storage.uri), sorted."""
    found: list[str] = []
    for prefix in (part.strip() for part in data_uri.split(",")):
        if not prefix:
            continue
        try:
            files = storage_uri.list_files(_resolved(prefix))
        except ValueError as error:  # not a URI storage reads (another scheme, no bucket)
            raise IngestError(f"data_uri {prefix!r}: {error}") from None
        except FileNotFoundError:
            raise IngestError(f"data_uri {prefix!r} does not exist; expected a folder or gs:// prefix "
                              f"holding .../{BATCH_FILE_NAME} files") from None
        found.extend(uri for uri in files if posixpath.basename(uri) == BATCH_FILE_NAME)
    if not found:
        raise IngestError(f"no {BATCH_FILE_NAME} under data_uri {data_uri!r}; expected the landing layout "
                          "data/processed/YYYY/MM/DD/HHMM/batch.csv")
    return sorted(set(found))


def _read_raw(uri: str) -> pd.DataFrame:
    """All values as strings, empty cells as "": typing happens once, over all batches."""
    return pd.read_csv(io.BytesIO(storage_uri.read_bytes(uri)), dtype=str, keep_default_na=False, na_filter=False)


def infer_column_type(raw: pd.Series) -> pd.Series:
    """Numbers become Int64 or float64 (missing as NA); anything else stays text.

    A single non-numeric value keeps the whole column as text: validation then
    reports the type change and names the batches that carry it.
    """
    present = raw != ""
    as_text = raw.where(present, None)
    if not present.any():
        return pd.Series(np.nan, index=raw.index, dtype="float64")
    numbers = pd.to_numeric(as_text, errors="coerce")
    if numbers[present].isna().any():
        return as_text.astype(object)
    if (numbers[present] % 1 == 0).all() and numbers[present].abs().max() < 2**53:
        return numbers.astype("Int64")
    return numbers.astype("float64")


def split_assignment(raw: pd.DataFrame, key_columns: tuple[str, ...], eval_percent: int) -> np.ndarray:
    """True for eval rows. Hashes the raw text of the key, so typing cannot move a row."""
    missing = [column for column in key_columns if column not in raw.columns]
    if missing:
        raise IngestError(f"split key column(s) {missing} not in the data; columns are {list(raw.columns)}")
    hashes = pd.util.hash_pandas_object(raw[list(key_columns)], index=False).to_numpy()
    return (hashes % np.uint64(100)) < np.uint64(eval_percent)


def load_batches(batch_uris: list[str]) -> tuple[pd.DataFrame, list[BatchInfo]]:
    frames, infos = [], []
    for index, uri in enumerate(batch_uris):
        frame = _read_raw(uri)
        infos.append(BatchInfo(uri=uri, rows=len(frame), columns=list(frame.columns)))
        frame[BATCH_COLUMN] = index
        frames.append(frame)
    # A batch without a column gets "" there: validation names it from BatchInfo.columns.
    raw = pd.concat(frames, ignore_index=True).fillna("")
    return raw, infos


def type_columns(raw: pd.DataFrame) -> pd.DataFrame:
    typed = pd.DataFrame({column: infer_column_type(raw[column]) for column in raw.columns
                          if column != BATCH_COLUMN})
    typed[BATCH_COLUMN] = raw[BATCH_COLUMN].astype("int32")
    return typed


def ingest(data_uri: str, config: DatasetConfig, output_dir: str | Path) -> IngestSummary:
    """Reads, types, labels and splits; writes train/eval Parquet and a manifest."""
    raw, infos = load_batches(find_batches(data_uri))
    is_eval = split_assignment(raw, config.split_key, config.eval_percent)
    typed = type_columns(raw)
    try:
        label = typed.eval(config.label.expression)
    except Exception as error:  # pandas raises many types here; all mean "the expression does not fit"
        raise IngestError(f"label expression {config.label.expression!r} failed on the data: {error}") from error
    typed[config.label.name] = pd.Series(label, index=typed.index).fillna(False).astype("int64")

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    typed[~is_eval].reset_index(drop=True).to_parquet(output / TRAIN_FILE, index=False)
    typed[is_eval].reset_index(drop=True).to_parquet(output / EVAL_FILE, index=False)
    summary = IngestSummary(
        data_uri=data_uri, batches=infos, rows=len(typed), train_rows=int((~is_eval).sum()),
        eval_rows=int(is_eval.sum()), label_positive_rate=float(typed[config.label.name].mean()),
    )
    (output / MANIFEST_FILE).write_text(json.dumps(dataclasses.asdict(summary), indent=1))
    return summary


def load_split(examples_dir: str | Path, split: str) -> pd.DataFrame:
    return pd.read_parquet(Path(examples_dir) / (TRAIN_FILE if split == "train" else EVAL_FILE))


def load_manifest(examples_dir: str | Path) -> IngestSummary:
    raw = json.loads((Path(examples_dir) / MANIFEST_FILE).read_text())
    raw["batches"] = [BatchInfo(**batch) for batch in raw["batches"]]
    return IngestSummary(**raw)
