"""TBPTT windows and example batches: what they cut, and that step i is always
the same batch."""

from collections import namedtuple

import numpy as np
import pytest

from recurrax.train.batching import ExampleBatches, StreamWindows

Examples = namedtuple("Examples", "inputs targets mask lengths")  # the fields batching reads


def test_stream_windows_cut_lanes_and_windows():
    tokens = np.arange(103)
    starts = np.zeros(103, bool)
    starts[[0, 30, 77]] = True
    windows = StreamWindows(tokens, starts, batch_size=4, steps=7)
    assert len(windows) == 3  # lanes of (103 - 1) // 4 = 25 tokens, 3 windows of 7
    lanes = np.concatenate([windows.batch(i)["inputs"] for i in range(3)], axis=0).T
    np.testing.assert_array_equal(lanes, tokens[:100].reshape(4, 25)[:, :21])
    for i in range(3):
        b = windows.batch(i)
        np.testing.assert_array_equal(b["targets"], b["inputs"] + 1)
        assert b["inputs"].shape == (7, 4) and b["inputs"].dtype == np.int32
    resets = np.concatenate([windows.batch(i)["resets"] for i in range(3)], axis=0).T
    lane_starts = {(b, 0) for b in range(4)}
    doc_starts = {(s // 25, s % 25) for s in (30, 77)}
    assert {tuple(i) for i in np.argwhere(resets)} == lane_starts | doc_starts
    np.testing.assert_array_equal(windows.batch(4)["inputs"], windows.batch(1)["inputs"])


def test_stream_windows_refuse_a_stream_too_short():
    with pytest.raises(ValueError, match="shorter than one window of 50"):
        StreamWindows(np.arange(100), None, batch_size=4, steps=50)


def test_stream_windows_carry_a_mask_of_scored_targets():
    tokens = np.arange(103)
    scored = tokens % 3 == 0
    windows = StreamWindows(tokens, None, batch_size=4, steps=7, scored=scored)
    for i in range(3):
        b = windows.batch(i)
        np.testing.assert_array_equal(b["mask"], b["inputs"] % 3 == 0)  # position-aligned
    with pytest.raises(ValueError, match="scored must have one entry per token"):
        StreamWindows(tokens, None, batch_size=4, steps=7, scored=scored[:-1])


def test_arithmetic_problems_as_one_stream_score_the_answers_only():
    from recurrax import tasks
    from recurrax.tasks.base import examples_as_stream
    t = tasks.get("arithmetic", n_train=30, n_valid=5, n_test=5, max_digits=3,
                  max_distractors=2)
    train = t.train
    assert isinstance(train, tasks.Examples)
    stream, scored = examples_as_stream(train)
    text = "".join(t.vocab[i] for i in stream.tokens)
    problems = text.split(".")[:-1]  # every problem ends with "."
    assert len(problems) == 30 and stream.doc_starts.sum() == 30
    starts = np.flatnonzero(stream.doc_starts)
    assert [text[s - 1] for s in starts[1:]] == ["."] * 29  # each starts after the last "."
    for i in np.flatnonzero(scored):  # the scored targets: the answer characters and "."
        after = text[i + 1]
        assert after in "0123456789-." and "=" in text[text.rfind(".", 0, i + 1) + 1:i + 1]
    # per problem, the answer characters and the end symbol: as many as the rows' masks
    assert scored.sum() == train.mask.sum()
    assert not scored[starts[1:] - 1].any()  # "." -> next problem's first token: not scored


def make_examples(n=10, T=3):
    inputs = np.arange(n * T).reshape(n, T)
    return Examples(inputs, inputs + 1, np.ones((n, T), bool), np.full(n, T))


def test_example_batches_visit_each_example_once_per_epoch():
    batches = ExampleBatches(make_examples(), batch_size=3, seed=1)
    assert len(batches) == 3
    seen = [batches.batch(i)["inputs"][0] // 3 for i in range(3)]  # row ids, from column 0
    rows = np.concatenate(seen)
    assert len(set(rows)) == 9
    again = np.concatenate([batches.batch(i)["inputs"][0] // 3 for i in range(3)])
    np.testing.assert_array_equal(rows, again)  # batch i is a function of i alone
    next_epoch = np.concatenate([batches.batch(i)["inputs"][0] // 3 for i in range(3, 6)])
    assert not np.array_equal(rows, next_epoch)
    b = batches.batch(0)
    assert b["inputs"].shape == (3, 3) and b["lengths"].shape == (3,)
    np.testing.assert_array_equal(b["targets"], b["inputs"] + 1)
