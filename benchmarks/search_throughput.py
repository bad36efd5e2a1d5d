"""Candidate cells evaluated per hour: the universal cell (one compiled
program trains a population of different architectures) against one compile
per candidate (`graph.compile`, a program per cell), on the same budget per
candidate: one stage of the search preset (its task, hidden size, batch and
SGD steps), scored on the validation split.

    python -m benchmarks.search_throughput [--preset quick] [--stage memorization]
        [--populations 2] [--compiled 6] [--population N] [--steps N]

The candidates are children of the LSTM and the GRU (`recurrax.search.mutations`),
the same ones for both ways. Reported: wall seconds, candidates per hour with
the compile counted (what a search of that many candidates gets) and without
it (the steady state), and the ratio. One JSON line per run is appended to
results/bench/search_throughput.jsonl.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import jax
import numpy as np
import optax

from experiments.jozefowicz import arch_search, harness_tasks
from recurrax import models, train
from recurrax.search import graph as G
from recurrax.search import mutations, universal
from recurrax.search.baselines import GRAPHS
from recurrax.train import population
from recurrax.train.results import ResultsFile


def candidates(n: int, seed: int = 0) -> list[G.Graph]:
    rng, out = np.random.default_rng(seed), []
    while len(out) < n:
        child, _ = mutations.mutate(GRAPHS[("lstm", "gru")[len(out) % 2]], rng)
        if universal.fits(child):
            out.append(child)
    return out


def compiled_candidate(setup, preset, task: str, graph: G.Graph, hyper: dict) -> float:
    """Train and score one cell with its own compiled program (a population of one)."""
    model = models.language_model(G.compile(graph, preset.hidden), setup.vocab_in,
                                  preset.hidden, inputs=setup.inputs, output_size=setup.vocab_out)
    opt = train.make_optimizer(1.0, base=optax.sgd)
    steps = population.make_population_steps(harness_tasks.make_loss(setup.kind, model), opt)
    carry = model.initial_carry((preset.batch,)) if setup.kind == "stream" else None
    pop = population.init_population(model.init, opt, seeds=np.array([hyper["seed"]]),
                                     learning_rate=np.array([hyper["learning_rate"]]),
                                     clip_norm=np.array([hyper["clip_norm"]]),
                                     init_scale=np.array([hyper["init_scale"]]), carry=carry)
    chunk = population.stack_batches([setup.train.batch(i) for i in range(preset.steps[task])])
    pop, _ = steps(pop, chunk)
    scores = harness_tasks.make_scores(setup.kind, model)
    members = None if carry is None else jax.tree.map(lambda c: c[None], carry)
    valid = harness_tasks.evaluate(setup, scores, pop.states.params, members, setup.valid,
                                   preset.eval_batches)
    return float(valid[setup.metric][0])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--preset", default="quick", choices=sorted(arch_search.PRESETS))
    parser.add_argument("--stage", default="memorization")
    parser.add_argument("--populations", type=int, default=2)
    parser.add_argument("--compiled", type=int, default=6, help="candidates compiled one by one")
    parser.add_argument("--population", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--out", type=Path, default=Path("results/bench/search_throughput.jsonl"))
    args = parser.parse_args(argv)
    preset = arch_search.PRESETS[args.preset]
    if args.population:
        preset = dataclasses.replace(preset, population=args.population)
    if args.steps:
        preset = dataclasses.replace(preset, steps={**preset.steps, args.stage: args.steps})
    stage = next(s for s in arch_search.stages(preset) if s.name == args.stage)
    M = preset.population
    graphs = candidates(M * args.populations)
    rng = np.random.default_rng(1)
    hypers = [arch_search.draw_hyper(preset, rng) for _ in graphs]
    trainer = arch_search.Trainer(preset)
    setup = trainer.setup(stage.name)

    times = []
    for p in range(args.populations):
        start = time.perf_counter()
        trainer(stage, graphs[p * M:(p + 1) * M], hypers[p * M:(p + 1) * M])
        times.append(time.perf_counter() - start)
    universal_total, universal_steady = sum(times), times[-1] / M
    compiled = []
    for g, h in zip(graphs[:args.compiled], hypers, strict=True):
        start = time.perf_counter()
        compiled_candidate(setup, preset, stage.name, g, h)
        compiled.append(time.perf_counter() - start)
    per_compiled = float(np.median(compiled))
    row = {
        "bench": "search_throughput", "device": jax.devices()[0].device_kind,
        "preset": preset.name, "stage": stage.name, "hidden": preset.hidden,
        "steps": preset.steps[stage.name], "batch": preset.batch, "population": M,
        "universal_seconds": [round(t, 2) for t in times],
        "universal_per_hour": round(3600 * len(times) * M / universal_total),
        "universal_per_hour_steady": round(3600 / universal_steady),
        "compiled_seconds": [round(t, 2) for t in compiled],
        "compiled_per_hour": round(3600 / per_compiled),
    }
    row["ratio"] = round(row["universal_per_hour"] / row["compiled_per_hour"], 2)
    row["ratio_steady"] = round(row["universal_per_hour_steady"] / row["compiled_per_hour"], 2)
    print(f"| way | candidates | seconds | candidates per hour |\n| --- | --- | --- | --- |\n"
          f"| universal cell, populations of {M} | {len(times) * M} | {universal_total:.0f} "
          f"(first population {times[0]:.0f}, with the compile) | "
          f"{row['universal_per_hour']} ({row['universal_per_hour_steady']} after the compile) |\n"
          f"| one compile per candidate | {len(compiled)} | {sum(compiled):.0f} | "
          f"{row['compiled_per_hour']} |")
    print(f"ratio: {row['ratio']} with the compile, {row['ratio_steady']} after it "
          f"({stage.name}, {row['steps']} SGD steps of batch {preset.batch}, H = {preset.hidden}, "
          f"{row['device']})")
    ResultsFile(args.out).append(row)
    return row


if __name__ == "__main__":
    main()
