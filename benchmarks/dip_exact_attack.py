"""Does DIP hold against its exact gradient? Each BPDA mode through the same DIP, on the same fakes of a run.

Attacks the clean fakes behind a run's DIP-study fooled fakes (and ``--natural`` further test fakes)
with APGD through the defense's DIP (``--at``: its iterations and classify_at; default the study's),
once per BPDA mode (``identity``, ``fitted-blur``, ``unroll``, ``exact``) and per step budget of
``--steps``, so success can be read against gradient evaluations (steps x EOT). Each run is a
:func:`dfrobust.studies.adaptive_run.run_adaptive` folder under ``--out`` (resumable). With the
smallest budget each mode also runs the sanity check on ``--sanity`` images: an unbounded PGD
through the same gradient, which must fool every one when the gradient carries information.

Prints one JSON line per run, then a Markdown table for benchmarks/RESULTS.md::

    .venv/bin/python benchmarks/dip_exact_attack.py --run runs/quick --model resnet18-blur --at 100 --images 8 --steps 2 5 --sanity 2
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from dfrobust.kinds.adaptive import attacked_fakes
from dfrobust.studies.adaptive_run import run_adaptive
from dfrobust.utils.io import read_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a reproduce run folder with a finished DIP study")
    parser.add_argument("--model", required=True, help="the DIP study's classifier (a role of the run, e.g. resnet18-blur)")
    parser.add_argument("--at", type=int, default=0, help="the defense's DIP iterations = classify_at (0: the study's classify_at)")
    parser.add_argument("--images", type=int, default=8, help="of the study's fooled fakes")
    parser.add_argument("--natural", type=int, default=0, help="further test fakes")
    parser.add_argument("--modes", nargs="+", default=["identity", "fitted-blur", "unroll", "exact"])
    parser.add_argument("--steps", type=int, nargs="+", default=[2, 5, 10], help="APGD step budgets")
    parser.add_argument("--eps", type=float, default=0.02)
    parser.add_argument("--eot", type=int, default=1)
    parser.add_argument("--eval-draws", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sanity", type=int, default=4, help="images of the unbounded sanity attack per mode (0: none)")
    parser.add_argument("--out", type=Path, default=Path("bench-out/dip-exact"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the attack's progress lines (minutes per run)

    config = read_record(args.run / "config.json") if (args.run / "config.json").is_file() else {}
    at = args.at or int((config.get("dip") or {}).get("classify_at", 0))
    if at < 2:
        raise SystemExit("give --at (the run has no config.json with dip.classify_at)")
    if (args.run / "dip" / "predictions.csv").is_file():
        images, fooled = attacked_fakes(args.run / "data", args.run / "dip", args.natural, args.images, seed=0)
    else:  # no DIP study yet: test fakes only (the natural threat)
        images, fooled = attacked_fakes(args.run / "data", args.run / "dip", args.natural, 0, seed=0)
    dip = {"iterations": at, "classify_at": at}
    runs = [(mode, steps, args.eps) for mode in args.modes for steps in args.steps]
    rows = []
    for mode, steps, eps in runs:
        out = args.out / f"{mode}-steps{steps}-eps{eps:g}"
        sanity = args.sanity if steps == min(args.steps) else 0
        s = run_adaptive(
            args.run / "data", args.run / "models" / f"{args.model}.safetensors", "dip", dip, "apgd", {"steps": steps, "eps": eps},
            out, eot=args.eot, bpda=mode, eval_draws=args.eval_draws, images=images, study_fooled=fooled,
            batch_size=args.batch_size, nonadaptive=False, seed=0, device="cpu", sanity_images=sanity,
        )  # fmt: skip
        row = {"mode": mode, "steps": steps, "eps": eps, "eot": args.eot, "gradient_evaluations": steps * args.eot, "n": s["n"],
               "dip_at": at, **{k: s.get(k) for k in ("accuracy_clean_purified", "accuracy_adaptive", "accuracy_adaptive_worst",
               "accuracy_adaptive_vote", "accuracy_adaptive_any_iterate", "accuracy_defended", "attack_seconds_per_image", "sanity")}}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(
        "\n| BPDA | APGD steps x EOT | eps | n | one draw | worst of N | majority | any iterate | defended | s/image | unbounded PGD fooled |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [f"{100 * r[k]:.0f}%" if r[k] is not None else "-" for k in
                 ("accuracy_adaptive", "accuracy_adaptive_worst", "accuracy_adaptive_vote", "accuracy_adaptive_any_iterate", "accuracy_defended")]  # fmt: skip
        print(
            f"| {r['mode']} | {r['gradient_evaluations']} | {r['eps']:g} | {r['n']} | {' | '.join(cells)} | {r['attack_seconds_per_image']:.1f} |"
        )


if __name__ == "__main__":
    main()
