"""Spreads and bias of the measurement protocol on the simulated H200 under counter and GPU variants.

For each variant of ``DIFFUSION_ENERGY_SIMULATED_GPU`` (lag, sampled fraction, power tail), one
measure job runs SD 1.5's points on the simulated GPU; printed per variant: the median and worst
repeat spread of the whole-image energy, the median and worst bias of the image energy against
the energy the simulated GPU really spent (``simulated_true_energy_j``), the windows measured
again, and the job's virtual time. The goals (issue 24): median spread <= 2%, worst <= 5%, bias
<= 3%, or gpu-check says "not ready" and why.

    python benchmarks/counter_variants.py [--seeds 2] [--points all|small] [--no-probe] [variant ...]

``--no-probe`` runs the protocol without the step probe (the counter taken at its word, as before
the probe existed), to show what the corrections are worth.
"""

from __future__ import annotations

import argparse
import statistics
import time

from diffusion_energy import grid
from diffusion_energy.measurement import bench, measure
from diffusion_energy.models import zoo

VARIANTS = [
    "h200",
    "h200,counter_lag_s=0.1", "h200,counter_lag_s=0.25",
    "h200,sampled_fraction=0.5", "h200,sampled_fraction=0.25",
    "h200,power_tail_s=0.1", "h200,power_tail_s=0.3",
    "h200,counter_lag_s=0.1,sampled_fraction=0.25,power_tail_s=0.1",
    "h200,counter_lag_s=0.25,sampled_fraction=0.25,power_tail_s=0.3",
]
SMALL = [(256, 10), (512, 25), (768, 25), (1024, 10)]
ALL = [(r, s) for r in (256, 512, 768, 1024) for s in (10, 25, 50)]


def run(variant: str, seed: int, shapes: list[tuple[int, int]], probe: bool = True) -> dict[str, float]:
    """One simulated job over ``shapes``; its spreads, biases, re-measures and virtual time."""
    spec = zoo.load_spec("sd15")
    setting = f"{variant},seed={seed}"
    protocol = measure.Protocol(step_probe=probe)
    where = bench.simulated_bench(setting, protocol)
    points = [grid.GridPoint("sd15", "fp16", r, s, True, 1) for r, s in shapes]
    spreads, biases, remeasured = [], [], 0
    for _, rows in measure.measure_group(spec, points, "h200-simulated", where.meter, protocol,
                                         where.device, where.context, **where.run_kwargs):
        assert (rows["status"] == "ok").all(), rows["error"].iloc[0]
        image = rows[rows["stage"] == "image"]
        spreads.append(float(image["repeat_spread"].iloc[0]))
        # a point's energy is the median of its repeats
        biases.append(image["energy_j"].median() / image["simulated_true_energy_j"].median() - 1)
        remeasured += len([n for n in str(image["remeasured"].iloc[0]).split("; ") if n])
    return {"spreads": spreads, "biases": biases, "remeasured": remeasured, "points": len(points),
            "virtual_s": where.total_s(), "physics": where.meter.physics.describe(),
            "problem": where.meter.physics.problem(), "noise": where.run_kwargs["host_noise"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--points", choices=("all", "small"), default="small")
    parser.add_argument("--no-probe", action="store_true", help="the counter taken at its word")
    parser.add_argument("variants", nargs="*", default=VARIANTS)
    args = parser.parse_args()
    shapes = ALL if args.points == "all" else SMALL
    print(f"SD 1.5 fp16, {len(shapes)} points x {args.seeds} seeds per variant; image energy per repeat "
          "vs the energy the simulated GPU really spent")
    for variant in args.variants:
        t0 = time.process_time()
        found = [run(variant, seed, shapes, not args.no_probe) for seed in range(args.seeds)]
        spreads = [s for f in found for s in f["spreads"]]
        biases = [abs(b) for f in found for b in f["biases"]]
        signed = [b for f in found for b in f["biases"]]
        print(f"{variant:64s} spread median {statistics.median(spreads):5.2%} worst {max(spreads):5.2%}; "
              f"point bias median {statistics.median(signed):+6.2%} worst {max(biases):5.2%}; "
              f"re-measured {sum(f['remeasured'] for f in found) / sum(f['points'] for f in found):.1f}"
              "/point; "
              f"host noise {statistics.median(f['noise'] for f in found):.1%}; "
              f"job {statistics.mean(f['virtual_s'] for f in found):.0f} s virtual "
              f"({time.process_time() - t0:.0f} CPU-s)")
        problem = found[0]["problem"]
        print(f"    probe: {found[0]['physics']}" + (f"; NOT READY: {problem}" if problem else ""))


if __name__ == "__main__":
    main()
