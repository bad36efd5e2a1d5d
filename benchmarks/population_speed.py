"""Trials per minute: one population of M trials in one compiled program,
against the same M trials run one at a time, measured in the same process.

    python -m benchmarks.population_speed [--preset quick --task arithmetic --arch lstm --trials 8]

Both ways run exactly the trials of the harness (same draws, same steps, same
evaluations). Compilation is included once for each way (a search pays it
once per shape): the one-at-a-time runs reuse their compiled program across
trials. The depth is fixed at 1 so that all M trials share one shape. Prints
one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import jax

from experiments.jozefowicz import protocol, runner, tasks as harness_tasks


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(protocol.PRESETS), default="quick")
    parser.add_argument("--task", choices=protocol.TASKS, default="arithmetic")
    parser.add_argument("--arch", choices=protocol.ARCHS, default="lstm")
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args(argv)
    preset = protocol.PRESETS[args.preset]
    trials = [dict(t, layers=1) for t in protocol.plan(preset, [args.task], [args.arch],
                                                        args.trials)]
    setup = harness_tasks.prepare(args.task, preset.batch, preset.unroll,
                                  preset.task_kwargs.get(args.task))
    jax.clear_caches()
    start = time.perf_counter()
    together = runner.run_population(setup, preset, args.arch, 1, trials)
    population_s = time.perf_counter() - start
    jax.clear_caches()
    start = time.perf_counter()
    alone = [runner.run_population(setup, preset, args.arch, 1, [t])[0] for t in trials]
    single_s = time.perf_counter() - start
    same = max(abs(a["metrics"]["test_nll"] - b["metrics"]["test_nll"])
               for a, b in zip(together, alone) if not a["diverged"])
    result = {"preset": args.preset, "task": args.task, "arch": args.arch, "trials": args.trials,
              "steps": preset.steps, "hidden": together[0]["hidden"],
              "population_s": round(population_s, 1), "one_at_a_time_s": round(single_s, 1),
              "population_trials_per_min": round(60 * args.trials / population_s, 2),
              "one_at_a_time_trials_per_min": round(60 * args.trials / single_s, 2),
              "speedup": round(single_s / population_s, 2),
              "max_test_nll_difference": same,
              "test_nll_population": [a["metrics"]["test_nll"] for a in together],
              "test_nll_alone": [b["metrics"]["test_nll"] for b in alone],
              "learning_rates": [t["learning_rate"] for t in trials],
              "device": jax.devices()[0].device_kind}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
