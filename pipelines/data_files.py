"""Local data files (jsonl, json, csv, tsv, parquet) loaded with `datasets`, with errors that name file and line.

`datasets` reports a malformed line or a bad byte as a parser traceback deep inside pyarrow. We check text files
first (UTF-8, one JSON object per line), so the message names the file, the line and what is wrong; and we keep
the mapping from row to line so that later checks on a row (a bad label, an empty field) can name the line too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from pipelines.errors import UserInputError

# File suffix -> `datasets` builder name and its options.
FORMATS = {
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t", "quoting": 3}),  # 3 = csv.QUOTE_NONE: GLUE tsv files hold bare quotes
    ".parquet": ("parquet", {}),
}


class DataError(UserInputError, ValueError):
    """Input data that cannot be used, with the file, line or example, and field named."""


class DataFileNotFound(DataError, FileNotFoundError):
    """A data file the recipe names does not exist (still a FileNotFoundError for callers that catch that)."""


@dataclass
class LocalFile:
    path: Path
    line_of_row: list[int] | None = None  # 1-based line number of each row, when the format has lines

    def where(self, row: int) -> str:
        if self.line_of_row is not None and row < len(self.line_of_row):
            return f"{self.path}, line {self.line_of_row[row]}"
        return f"{self.path}, example {row}"


def find_split_file(data_dir: str | Path, split: str) -> Path:
    """`data_dir/<split>.<any supported suffix>`; an error lists what was looked for."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"Data directory not found: {data_dir}")
    candidates = [data_dir / f"{split}{suffix}" for suffix in FORMATS]
    found = [p for p in candidates if p.is_file()]
    if not found:
        raise DataError(
            f"No file for split '{split}' in {data_dir}: looked for {', '.join(p.name for p in candidates)}"
        )
    return found[0]


def _check_text_file(path: Path, suffix: str) -> list[int] | None:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path}, line {line}: not UTF-8 (byte {raw[error.start]:#04x} at offset {error.start})"
        ) from None
    # A byte-order mark, as Windows tools and Excel write it; `datasets` skips it when it reads the file.
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    lines = text.splitlines()
    if suffix == ".jsonl" or (suffix == ".json" and not text.lstrip().startswith(("[", '{"data"'))):
        line_of_row = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(
                    f"{path}, line {number}: malformed JSON ({error.msg} at column {error.colno})"
                ) from None
            if not isinstance(value, dict):
                raise DataError(f"{path}, line {number}: expected a JSON object, got {type(value).__name__}")
            line_of_row.append(number)
        return line_of_row
    if suffix in (".csv", ".tsv"):
        # Row i is line i + 2 (after the header) when no field spans lines, which holds for NLI-style files.
        return list(range(2, len(lines) + 1))
    return None


def load_local_file(
    path: str | Path, split: str = "train", cache_dir: str | None = None
) -> tuple[datasets.Dataset, LocalFile]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{path}: unsupported format '{suffix}'. Supported: {', '.join(FORMATS)}")
    line_of_row = None if suffix == ".parquet" else _check_text_file(path, suffix)
    builder, options = FORMATS[suffix]
    try:
        dataset = datasets.load_dataset(
            builder, data_files={split: str(path)}, split=split, cache_dir=cache_dir, **options
        )
    except Exception as error:  # pyarrow/pandas errors; the text checks above catch the common ones first
        raise DataError(f"{path}: could not be read as {suffix[1:]}: {type(error).__name__}: {error}") from error
    return dataset, LocalFile(path, line_of_row)


def load_from_hub(name: str, config: str | None, cache_dir: str | None, offline_hint: str) -> datasets.DatasetDict:
    """The Hub data set, or a DataError that says how to point the recipe at local files instead (network, unknown
    id, offline mode: all end the same way for the user)."""
    try:
        return datasets.load_dataset(name, config, cache_dir=cache_dir)
    except Exception as error:
        which = f"'{name}' ({config})" if config else f"'{name}'"
        raise DataError(
            f"Could not load the data set {which} from the Hugging Face Hub: "
            f"{type(error).__name__}: {error}\nOffline, point the recipe at local files: {offline_hint}"
        ) from error


def require_columns(dataset: datasets.Dataset, columns, source: LocalFile | str) -> None:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        where = source.path if isinstance(source, LocalFile) else source
        raise DataError(f"{where}: missing column(s) {', '.join(missing)}; found {', '.join(dataset.column_names)}")


def label_id(label, label_ids: dict[str, int]) -> int | None:
    """An id (0 .. len(label_ids) - 1), a label name, or an integral float (pandas writes CSV labels as 1.0) -> the id;
    None if it is none of these."""
    if isinstance(label, str):
        text = label.strip().lower()
        if text in label_ids:
            return label_ids[text]
        try:
            label = float(text)
        except ValueError:
            return None
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, float, np.integer, np.floating)):
        return None
    if not float(label).is_integer() or not 0 <= label < len(label_ids):  # NaN (an empty CSV cell) fails is_integer
        return None
    return int(label)
