"""Opening PGN sources as byte or text streams: plain ``.pgn`` and zstandard ``.pgn.zst``.

Files are streamed, never loaded whole. A zstd stream that ends inside a frame (a
truncated download) raises :class:`TruncatedStreamError`, and one with a bad frame or
checksum :class:`CorruptStreamError`, only after every byte that could be decoded before
the damage has been returned, so a reader keeps all games before it.

Text is UTF-8; a byte sequence that is not UTF-8 is read as Latin-1 (older PGN files and
databases write ``Polgár`` as ``Polg\\xe1r``), so both spellings name the same player.
"""

from __future__ import annotations

import codecs
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

import zstandard

PGN_SUFFIXES = (".pgn", ".pgn.zst", ".zst")


class DataError(Exception):
    """Bad input the user must fix (missing file, no games, no players left): one clear message."""


class TruncatedStreamError(DataError):
    """A compressed stream ended in the middle of a frame."""


class CorruptStreamError(DataError):
    """A compressed stream holds a bad frame or a failed checksum (or is not zstd at all)."""


def _latin1_fallback(error: UnicodeDecodeError) -> tuple[str, int]:
    return error.object[error.start : error.end].decode("latin-1"), error.end


codecs.register_error("jaxstyle_latin1", _latin1_fallback)


def decode_pgn(data: bytes) -> str:
    """PGN bytes → text: UTF-8, each undecodable byte read as Latin-1 instead."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="jaxstyle_latin1")


class _ZstdReader(io.RawIOBase):
    """Raw byte stream decompressing (possibly multi-frame) zstd data chunk by chunk."""

    def __init__(self, fileobj: io.BufferedIOBase, name: str, chunk_bytes: int = 1 << 16):
        super().__init__()
        self._src = fileobj
        self._name = name
        self._chunk_bytes = chunk_bytes
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._in_frame = False
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._error: CorruptStreamError | None = None

    def readable(self) -> bool:
        return True

    def _feed(self, data: bytes) -> bytes:
        out = []
        while data:
            self._in_frame = True
            try:
                out.append(self._obj.decompress(data))
            except zstandard.ZstdError as error:
                self._error = CorruptStreamError(f"{self._name}: not a valid zstd stream ({error})")
                break
            if self._obj.eof:
                data = self._obj.unused_data
                self._obj = self._dctx.decompressobj()
                self._in_frame = False
            else:
                data = b""
        return b"".join(out)

    def readinto(self, buffer) -> int:
        while self._pos >= len(self._buf) and not self._eof:
            if self._error is not None:
                raise self._error
            chunk = self._src.read(self._chunk_bytes)
            if not chunk:
                self._eof = True
                if self._in_frame:
                    raise TruncatedStreamError(
                        f"{self._name}: zstd stream is truncated (ends inside a frame)"
                    )
                break
            self._buf = self._feed(chunk)
            self._pos = 0
        n = min(len(buffer), len(self._buf) - self._pos)
        buffer[:n] = self._buf[self._pos : self._pos + n]
        self._pos += n
        return n

    def close(self) -> None:
        self._src.close()
        super().close()


def open_bytes(path: str | os.PathLike) -> io.BufferedIOBase:
    """Opens a ``.pgn`` or ``.pgn.zst`` file as a buffered byte stream (zstd decoded).

    Raises:
      DataError: when the file does not exist or is a directory.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"PGN source not found: {path}")
    raw = open(path, "rb")  # noqa: SIM115 - closed by the returned wrapper
    if path.suffix == ".zst":
        return io.BufferedReader(_ZstdReader(raw, str(path)), buffer_size=1 << 20)
    return raw


def open_text(path: str | os.PathLike) -> TextIO:
    """Opens a ``.pgn`` or ``.pgn.zst`` file as a text stream: UTF-8 (BOM stripped), bytes
    that are not UTF-8 read as Latin-1 (see :func:`decode_pgn`).

    Raises:
      DataError: when the file does not exist or is a directory.
    """
    return io.TextIOWrapper(open_bytes(path), encoding="utf-8-sig", errors="jaxstyle_latin1")


def resolve_sources(sources: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Expands files and directories (their ``*.pgn`` / ``*.pgn.zst``, sorted) to a file list.

    Raises:
      DataError: when a named path does not exist or a directory holds no PGN files.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and _is_pgn(p))
            if not found:
                raise DataError(f"no .pgn or .pgn.zst files in directory {path}")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"PGN source not found: {path}")
    if not files:
        raise DataError("no PGN sources given")
    return files


def _is_pgn(path: Path) -> bool:
    return any(path.name.endswith(suffix) for suffix in PGN_SUFFIXES)


def describe_sources(files: Sequence[Path]) -> str:
    """Short human description, e.g. ``'3 files (games-0000.pgn … games-0002.pgn)'``."""
    if len(files) == 1:
        return str(files[0])
    return f"{len(files)} files ({files[0].name} … {files[-1].name}) in {files[0].parent}"
