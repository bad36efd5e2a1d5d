"""The Jozefowicz harness: the protocol's draws, the report, and a run that is
killed and resumed without losing or repeating a trial."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments.jozefowicz import __main__ as cli
from experiments.jozefowicz import protocol, report
from recurrax.train.results import ResultsFile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_trials_are_drawn_from_their_names_alone_and_paired_across_cells():
    preset = protocol.PRESETS["paper"]
    everything = protocol.plan(preset, ["arithmetic", "xml"], ["lstm", "gru", "mut1"], 5)
    alone = protocol.plan(preset, ["xml"], ["gru"], 5)
    assert [t for t in everything if t["task"] == "xml" and t["arch"] == "gru"] == alone
    drawn = ("seed", "init_scale", "learning_rate", "clip_norm", "layers")
    for task in ("arithmetic", "xml"):
        for i in range(5):  # trial i: the same draws for every architecture
            same = [t for t in everything if t["task"] == task and t["trial"] == i]
            assert len({tuple(t[k] for k in drawn) for t in same}) == 1
    assert len({t["seed"] for t in everything}) == 10  # 2 tasks x 5 trials
    for t in everything:  # the paper's ranges
        assert 0.3 <= t["init_scale"] <= 2.8 and 0.1 <= t["learning_rate"] <= 5.0
        assert 1.0 <= t["clip_norm"] <= 20.0 and t["layers"] in (1, 2, 3, 4)
    with pytest.raises(ValueError, match="unknown tasks or architectures"):
        protocol.plan(preset, ["ptb"], ["lstm"], 1)


def test_preset_overrides_name_what_they_change():
    quick = protocol.PRESETS["quick"]
    changed = protocol.override(quick, ["epochs=3", "arithmetic.max_distractors=5",
                                        "learning_rate=(0.5, 2.0)"])
    assert changed.epochs == 3 and changed.learning_rate == (0.5, 2.0)
    assert changed.task_kwargs["arithmetic"]["max_distractors"] == 5
    assert quick.task_kwargs["arithmetic"] != changed.task_kwargs["arithmetic"]  # a copy
    assert protocol.fingerprint(changed) != protocol.fingerprint(quick)
    for bad, words in [("epochs", "KEY=VALUE"), ("epochs=twelve", "Python literal"),
                       ("colour=3", "neither a preset field"),
                       ("ptb.size=3", "neither a preset field"),
                       ("epochs=0", "epochs must be an int >= 1"),
                       ("trials=2.5", "trials must be an int >= 1"),
                       ("layers=()", "layers must be a non-empty tuple"),
                       ("learning_rate=(5, 0.5)", "learning_rate must be a range"),
                       ("init_scale=(0, 1)", "init_scale must be a range"),
                       ("examples_as_stream=1", "examples_as_stream must be True or False")]:
        with pytest.raises(ValueError, match=words):
            protocol.override(quick, [bad])


def test_paper_init_draws_uniformly_within_s_over_root_h_plus_fixed_offsets():
    from experiments.jozefowicz import runner
    from recurrax import models, train
    from recurrax.train import population
    H, V, s = 16, 7, 2.0
    model = models.language_model("lstm-b", V, H)
    init_params, offset = runner.paper_init(model, "lstm-b", H)
    pop = population.init_population(init_params, train.make_optimizer(1.0), seeds=np.arange(3),
                                     learning_rate=np.ones(3), clip_norm=np.ones(3),
                                     init_scale=np.full(3, s), init_offset=offset)
    params = pop.states.params
    cell = params["layers"][0]
    np.testing.assert_array_equal(np.asarray(offset["layers"][0]["b_f"]), 1.0)
    bound = s / np.sqrt(H)
    for name, leaf in [("embed", params["embed"]["E"]), ("W_hf", cell["W_hf"]),
                       ("b_i", cell["b_i"]), ("readout", params["readout"]["W"])]:
        x = np.asarray(leaf)
        assert np.abs(x).max() <= bound, name
        assert np.abs(x).max() > 0.9 * bound, name  # fills the range, not a narrower law
        assert abs(np.mean(x)) < 0.1 * bound, name
    b_f = np.asarray(cell["b_f"]) - 1.0  # the forget bias: 1 plus the scaled draw
    assert np.abs(b_f).max() <= bound and np.abs(b_f).max() > 0.5 * bound


def record(task, arch, trial, valid, test, diverged=False):
    metric = report.COLUMNS[task]
    return {"key": f"p/{task}/{arch}/{trial}", "task": task, "arch": arch, "diverged": diverged,
            "metrics": {f"valid_{metric}": valid, f"test_{metric}": test}}


def test_report_takes_the_best_trial_on_validation():
    rows = [record("arithmetic", "lstm", 0, 0.5, 0.45), record("arithmetic", "lstm", 1, 0.7, 0.6),
            record("arithmetic", "lstm", 2, None, None, diverged=True),
            record("words", "lstm", 0, 120.0, 130.0), record("words", "lstm", 1, 110.0, 150.0),
            record("arithmetic", "lstm", 1, 0.1, 0.1)]  # a duplicate line: the first counts
    table = report.markdown(rows)
    line = [row for row in table.splitlines() if row.startswith("| lstm")][0]
    assert "0.6 (paper 0.892) [3 trials, 1 diverged]" in line  # best valid 0.7 -> its test
    assert "150 (PTB ref. 0.0891) [2 trials]" in line  # lowest valid perplexity 110 -> its test 150


ARGS = ["run", "--preset", "smoke", "--tasks", "arithmetic", "--archs", "lstm", "gru",
        "--trials", "2"]


def lines(path):
    return [json.loads(line) for line in open(path) if line.strip()]


def test_a_killed_run_resumes_without_losing_or_repeating_trials(tmp_path):
    results = tmp_path / "r.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "experiments.jozefowicz", *ARGS,
                             "--results", str(results)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not (results.exists() and results.read_text().strip()):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)  # after the first population, mid-way through the run
    proc.wait()
    first = lines(results)
    assert 1 <= len(first) < 4, "the kill came too late to test anything"
    with open(results, "a") as f:
        f.write('{"key": "smoke/arithmetic/gru/9", "metr')  # and a torn last line
    cli.main([*ARGS, "--results", str(results)])
    records, problems = ResultsFile(results).read()
    keys = [r["key"] for r in records]
    assert sorted(keys) == sorted(f"smoke/arithmetic/{a}/{i}" for a in ("lstm", "gru")
                                  for i in range(2))
    assert records[:len(first)] == first  # finished trials kept as they were
    assert len(problems) == 1 and "torn" in problems[0]
    for r in records:
        for field in ("arch", "task", "seed", "init_scale", "learning_rate", "clip_norm",
                      "layers", "hidden", "params", "metrics", "steps", "seconds", "recurrax"):
            assert field in r
        assert r["params"] <= protocol.PRESETS["smoke"].budget["arithmetic"]
        assert 0.0 <= r["metrics"]["test_accuracy"] <= 1.0
    cli.main([*ARGS, "--results", str(results)])  # everything done: nothing runs again
    assert len(ResultsFile(results).read()[0]) == 4
    assert (tmp_path / "r.png").stat().st_size > 0


@pytest.mark.slow  # kept out of the default run for the 10-minute budget
@pytest.mark.data
def test_the_held_out_music_task_runs(tmp_path):
    from experiments.jozefowicz import harness_tasks, runner
    preset = protocol.PRESETS["smoke"]
    setup = harness_tasks.prepare("music", preset.batch, preset.unroll, {"max_chorales": 20})
    trials = protocol.plan(preset, ["music"], ["mut1"], 2)
    records = runner.run_population(setup, preset, "mut1", 1, trials)
    P = setup.vocab_in
    for r in records:
        assert r["params"] <= preset.budget["music"] and not r["diverged"]
        # a Bernoulli model of P keys: a coin per key gives P·log 2 nats per step
        assert 0 < r["metrics"]["test_nll_per_step"] < P * np.log(2)


@pytest.mark.slow  # kept out of the default run for the 10-minute budget
@pytest.mark.data
def test_the_word_language_model_task_runs():
    from experiments.jozefowicz import harness_tasks, runner
    preset = protocol.PRESETS["smoke"]
    setup = harness_tasks.prepare("words", preset.batch, preset.unroll)
    records = runner.run_population(setup, preset, "lstm-b", 1,
                                    protocol.plan(preset, ["words"], ["lstm-b"], 1))
    m = records[0]["metrics"]
    assert setup.vocab_in == 10000 and records[0]["params"] <= preset.budget["words"]
    assert m["test_word_probability"] == pytest.approx(np.exp(-m["test_nll"]))
    assert 1 < m["test_perplexity"] < 10000  # better than uniform after 30 steps


def test_a_changed_preset_refuses_a_results_file_of_the_old_one(tmp_path):
    results = tmp_path / "r.jsonl"
    old = dict(protocol.draw_trial(protocol.PRESETS["smoke"], "arithmetic", "lstm", 0),
               preset_fingerprint="00000000")
    results.write_text(json.dumps(old) + "\n")
    with pytest.raises(SystemExit, match="older definition of the 'smoke' preset"):
        cli.main(ARGS + ["--results", str(results)])
    smoke = protocol.PRESETS["smoke"]
    changed = dataclasses.replace(smoke, epochs=smoke.epochs + 1)
    assert protocol.fingerprint(changed) != protocol.fingerprint(smoke)


@pytest.mark.slow  # 9 s
def test_a_split_scored_in_one_call_equals_window_by_window_scoring():
    """`tasks.evaluate` (one compiled scan over the windows, every member at
    once) against a plain loop over the windows for each member alone, on
    arithmetic fed as one stream whose answers alone are scored."""
    import jax

    from experiments.jozefowicz import harness_tasks, runner
    preset = protocol.override(protocol.PRESETS["smoke"], ["examples_as_stream=True",
                                                           "reset_at_documents=False"])
    setup = harness_tasks.prepare_for(preset, "arithmetic")
    assert setup.kind == "stream" and setup.valid.batch(0)["mask"].any()
    model, opt, _, scores = runner.programs(setup.kind, setup.vocab_in, setup.vocab_out,
                                            setup.inputs, "gru", 1, 8)
    params = jax.vmap(model.init)(jax.random.split(jax.random.key(0), 3))
    carry = jax.tree.map(lambda c: np.broadcast_to(c, (3,) + c.shape),
                         model.initial_carry((preset.batch,)))
    got = harness_tasks.evaluate(setup, scores, params, carry, setup.valid, None)
    for m in range(3):
        p = jax.tree.map(lambda a, m=m: a[m], params)
        c, nll, hits, count = model.initial_carry((preset.batch,)), 0.0, 0.0, 0
        for b in setup.valid:
            c, logits = model.apply(p, b["inputs"], c, resets=b["resets"])
            logp = np.asarray(jax.nn.log_softmax(logits))
            picked = np.take_along_axis(logp, b["targets"][..., None], -1)[..., 0]
            nll -= picked[b["mask"]].sum()
            hits += (logp.argmax(-1) == b["targets"])[b["mask"]].sum()
            count += b["mask"].sum()
        np.testing.assert_allclose(got["nll"][m], nll / count, rtol=1e-5)
        np.testing.assert_allclose(got["accuracy"][m], hits / count, rtol=1e-6)


def test_a_population_trains_arithmetic_as_a_stream_and_counts_its_steps():
    from experiments.jozefowicz import harness_tasks, runner
    preset = protocol.override(protocol.PRESETS["smoke"], ["examples_as_stream=True",
                                                           "reset_at_documents=False",
                                                           "epochs=3"])
    setup = harness_tasks.prepare_for(preset, "arithmetic")
    trials = protocol.plan(preset, ["arithmetic"], ["lstm-b"], 2)
    records = runner.run_population(setup, preset, "lstm-b", 1, trials)
    for r in records:
        assert r["epoch_steps"] == len(setup.train)
        assert r["steps"] == 3 * len(setup.train)  # too short for the schedule to stop it
        assert 0 <= r["metrics"]["test_accuracy"] <= 1 and r["halvings"] == 0
