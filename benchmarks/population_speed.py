"""Trials per minute: one population of M trials in one compiled program,
against the same M trials run one at a time, measured in the same process.

    python -m benchmarks.population_speed [--preset quick --task arithmetic --arch lstm --trials 8]
        [--set KEY=VALUE ...] [--population-only]

Both ways run exactly the trials of the harness (same draws, same steps, same
evaluations). Compilation is included once for each way (a search pays it
once per shape): the one-at-a-time runs reuse their compiled program across
trials. The depth is fixed at 1 so that all M trials share one shape. Prints
one JSON line. `--set` overrides the preset as `jozefowicz run --set` does
(e.g. to time an older definition of a preset); `--population-only` skips
the one-at-a-time runs.
"""

from __future__ import annotations

import argparse
import json
import time

import jax

from experiments.jozefowicz import harness_tasks, protocol, runner


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--preset", choices=sorted(protocol.PRESETS), default="quick")
    parser.add_argument("--task", choices=protocol.TASKS, default="arithmetic")
    parser.add_argument("--arch", choices=protocol.ARCHS, default="lstm")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", default=[])
    parser.add_argument("--population-only", action="store_true")
    parser.add_argument("--cpu-devices", type=int, default=None,
                        help="as `jozefowicz run --cpu-devices` (default: one per core)")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error(f"--trials must be at least 1, got {args.trials}")
    preset = protocol.override(protocol.PRESETS[args.preset], args.set)
    runner.use_cpu_devices(args.cpu_devices)
    mesh = runner.member_mesh()
    trials = [dict(t, layers=1) for t in protocol.plan(preset, [args.task], [args.arch],
                                                        args.trials)]
    setup = harness_tasks.prepare_for(preset, args.task)
    jax.clear_caches()
    start = time.perf_counter()
    together = runner.run_population(setup, preset, args.arch, 1, trials, mesh)
    population_s = time.perf_counter() - start
    result = {"preset": args.preset, "set": args.set, "task": args.task, "arch": args.arch,
              "trials": args.trials, "epochs": preset.epochs,
              "steps": [a["steps"] for a in together], "hidden": together[0]["hidden"],
              "population_s": round(population_s, 1),
              "population_trials_per_min": round(60 * args.trials / population_s, 2),
              "test_nll_population": [a["metrics"]["test_nll"] for a in together],
              "learning_rates": [t["learning_rate"] for t in trials],
              "device": jax.devices()[0].device_kind, "devices": len(jax.devices())}
    if not args.population_only:
        jax.clear_caches()
        start = time.perf_counter()
        alone = [runner.run_population(setup, preset, args.arch, 1, [t], mesh)[0] for t in trials]
        single_s = time.perf_counter() - start
        result |= {"one_at_a_time_s": round(single_s, 1),
                   "one_at_a_time_trials_per_min": round(60 * args.trials / single_s, 2),
                   "speedup": round(single_s / population_s, 2),
                   "max_test_nll_difference": max(
                       (abs(a["metrics"]["test_nll"] - b["metrics"]["test_nll"])
                        for a, b in zip(together, alone, strict=True) if not a["diverged"]),
                       default=None),
                   "test_nll_alone": [b["metrics"]["test_nll"] for b in alone]}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
