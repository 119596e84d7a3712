"""Load, check, label-encode and tokenize a job's dataset (recipe steps 1-2)."""
from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from datasets import ClassLabel, Dataset
from datasets.exceptions import DatasetGenerationError

SPLIT_ALIASES = {
    "train": ("train",),
    "validation": ("validation", "valid", "val", "dev", "eval"),
    "test": ("test",),
}
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "json", ".json": "json",
              ".parquet": "parquet"}
TEXT_FORMATS = {"csv", "json"}  # datasets' builders; TSV is csv with a tab delimiter
CHUNK_BYTES = 1 << 20
# Messages name columns, splits and counts, never cell values; other text they echo is capped.
SHOWN_CHARS = 200
SHOWN_COLUMNS = 30


class DataError(ValueError):
    """The data cannot train this spec; the message says what is wrong."""


@dataclass
class Source:
    """How to call load_dataset for a spec's dataset."""

    path: str
    name: str | None = None
    data_files: dict[str, str] | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    from_disk: Path | None = None


def builder_for(fmt: str) -> tuple[str, dict[str, Any]]:
    if fmt == "tsv":
        return "csv", {"delimiter": "\t"}
    return fmt, {}


def local_source(path: Path) -> Source:
    if not path.exists():
        raise DataError(f"dataset.path {str(path)!r} does not exist on this worker")
    if path.is_file():
        fmt = EXTENSIONS.get(path.suffix.lower())
        if fmt is None:
            raise DataError(f"unsupported file type {path.suffix!r}; use CSV, TSV, JSONL or Parquet")
        builder, kwargs = builder_for(fmt)
        return Source(builder, data_files={"train": str(path)}, kwargs=kwargs)
    if (path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists():
        return Source(str(path), from_disk=path)
    files = _split_files(path)
    if not files:
        return Source(str(path))  # a dataset repo layout or loading script datasets understands
    formats = {f for f, _ in files.values()}
    if len(formats) > 1:
        raise DataError(f"mixed file types in {path}: {sorted(formats)}")
    builder, kwargs = builder_for(formats.pop())
    return Source(builder, data_files={s: str(p) for s, (_, p) in files.items()}, kwargs=kwargs)


def _split_files(directory: Path) -> dict[str, tuple[str, Path]]:
    """Files named after splits (train.csv, validation.jsonl, dev.tsv, ...)."""
    found: dict[str, tuple[str, Path]] = {}
    for file in sorted(directory.iterdir()):
        fmt = EXTENSIONS.get(file.suffix.lower())
        if fmt is None or not file.is_file():
            continue
        for split, aliases in SPLIT_ALIASES.items():
            if file.stem.lower() in aliases and split not in found:
                found[split] = (fmt, file)
    return found


def upload_source(file_path: str, fmt: str) -> Source:
    builder, kwargs = builder_for(fmt)
    return Source(builder, data_files={"train": file_path}, kwargs=kwargs)


def check_file(path: Path, fmt: str) -> None:
    """Empty and non-UTF-8 files get a precise error before datasets parses them."""
    if not path.is_file():
        raise DataError(f"{path.name} does not exist on this worker")
    if path.stat().st_size == 0:
        raise DataError(f"{path.name} is empty")
    if fmt in TEXT_FORMATS:
        _check_utf8(path)


def _check_utf8(path: Path) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, lines = 0, 1
    with path.open("rb") as file:
        while True:
            chunk = file.read(CHUNK_BYTES)
            pending = decoder.getstate()[0]
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                data = pending + chunk
                line = lines + data[:exc.start].count(b"\n")
                raise DataError(
                    f"{path.name} is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset "
                    f"{offset - len(pending) + exc.start} (line {line}); save it as UTF-8"
                ) from None
            if not chunk:
                return
            offset += len(chunk)
            lines += chunk.count(b"\n")


def load_split(source: Source, split: str) -> Dataset:
    """One split; `split` may use datasets' slicing (`train[:80%]`, `train[80%:]`)."""
    file = _file_of(source, split)
    if file is not None:
        check_file(file, source.path)  # the builder's name: csv (also TSV), json, parquet
    try:
        if source.from_disk is not None:
            dataset = _from_disk(source.from_disk, split)
        else:
            dataset = datasets.load_dataset(source.path, source.name,
                                            data_files=source.data_files, split=split,
                                            **source.kwargs)
    except DatasetGenerationError as exc:
        cause = exc.__cause__ or exc.__context__ or exc
        raise DataError(f"could not read the {split} split{_files_of(source, split)}: "
                        f"{type(cause).__name__}: {capped(str(cause))}") from exc
    except ValueError as exc:
        if "Unknown split" in str(exc) or "Bad split" in str(exc):
            raise DataError(f"split {capped(split)!r} not found: {capped(str(exc))}") from exc
        if "corresponds to no data" in str(exc):
            raise DataError(f"the {split} split is empty{_files_of(source, split)}") from exc
        raise
    if len(dataset) == 0:
        raise DataError(f"the {split} split is empty{_files_of(source, split)}")
    return dataset


def capped(text: str, limit: int = SHOWN_CHARS) -> str:
    """User-controlled text as a message may echo it: at most `limit` characters."""
    return text if len(text) <= limit else text[:limit] + "..."


def _file_of(source: Source, split: str) -> Path | None:
    file = (source.data_files or {}).get(split.split("[", 1)[0])
    return Path(file) if isinstance(file, str) else None


def _files_of(source: Source, split: str) -> str:
    file = _file_of(source, split)
    return f" ({file.name})" if file else ""


def _from_disk(path: Path, split: str) -> Dataset:
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, Dataset):
        return loaded
    if split not in loaded:
        raise DataError(f"split {split!r} not found; the dataset has {sorted(loaded)}")
    return loaded[split]


def check_columns(dataset: Dataset, split: str, columns: list[str]) -> None:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        names = ", ".join(repr(capped(c)) for c in missing)
        have = ", ".join(capped(c) for c in dataset.column_names[:SHOWN_COLUMNS])
        more = len(dataset.column_names) - SHOWN_COLUMNS
        have += f" and {more} more" if more > 0 else ""
        raise DataError(f"column {names} not found in the {split} split; columns are: {have}")


@dataclass
class Labels:
    """Label names in id order; maps raw values to ids."""

    names: list[str]
    to_id: dict[Any, int]
    class_label: bool

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}


def labels_from(train: Dataset, label_field: str) -> Labels:
    feature = train.features[label_field]
    if isinstance(feature, ClassLabel):
        names = list(feature.names)
        present = {v for v in train[label_field] if v is not None and v >= 0}
        labels = Labels(names, {i: i for i in range(len(names))}, class_label=True)
    else:
        present = {v for v in train[label_field] if v is not None}
        values = sorted(present, key=lambda v: (isinstance(v, str), v))
        labels = Labels([str(v) for v in values], {v: i for i, v in enumerate(values)}, False)
    if not present:
        raise DataError(f"label column {label_field!r} has no values in the train split")
    if len(present) < 2:
        # The value itself is not shown: messages never echo data (it may be a secret).
        raise DataError(f"label column {label_field!r} has a single value in the train split "
                        f"({len(train)} rows); classification needs at least two classes")
    return labels


def unlabeled(dataset: Dataset, label_field: str, labels: Labels) -> bool:
    """True when a split carries no usable labels (GLUE test splits hold -1)."""
    if label_field not in dataset.column_names:
        return True
    values = dataset[label_field]
    return all(v is None or (labels.class_label and v == -1) for v in values)


def encode_labels(dataset: Dataset, split: str, label_field: str, labels: Labels) -> Dataset:
    values = dataset[label_field]
    unknown = {v for v in values if v not in labels.to_id}
    if unknown:
        rows = sum(1 for v in values if v in unknown)
        raise DataError(f"label column {label_field!r}: {len(unknown)} value(s) in {rows} row(s) "
                        f"of the {split} split do not occur in the train split (which has "
                        f"{len(labels.names)} labels)")
    mapping = labels.to_id
    return dataset.map(lambda batch: {"labels": [mapping[v] for v in batch[label_field]]},
                       batched=True, desc=f"encode {split} labels")


def tokenize(dataset: Dataset, tokenizer, text_fields: list[str], max_length: int) -> Dataset:
    """Batched tokenization with truncation; padding is left to the collator."""
    first, second = text_fields[0], (text_fields[1] if len(text_fields) > 1 else None)

    def encode(batch: dict[str, list]) -> dict:
        texts = [t if t is not None else "" for t in batch[first]]
        pairs = [t if t is not None else "" for t in batch[second]] if second else None
        return tokenizer(texts, pairs, truncation=True, max_length=max_length)

    keep = {"labels"}
    drop = [c for c in dataset.column_names if c not in keep]
    return dataset.map(encode, batched=True, remove_columns=drop, desc="tokenize")
