"""Options shared by `evaluate` and `attack` for videos and platform chains, and their video runs.

Not a subcommand (no ``register``): ``evaluate`` and ``attack`` add these options and hand a
video folder (real/ + fake/ of video files) to :func:`run_evaluate_videos` / :func:`run_attack_videos`.
"""

from __future__ import annotations

import argparse
from typing import Any

CHAIN_HELP = ("jpeg:LO-HI (quality), h264:LO-HI (CRF), resize:LO-HI (factor), blur:LO-HI (sigma px), "
              "shift:LO-HI (px), crop:LO-HI (kept fraction), comma-separated, applied left to right")  # fmt: skip


def add_video_args(parser: argparse.ArgumentParser) -> None:
    """``--fps`` and ``--max-frames``: how a video folder's clips are sampled."""
    from dfrobust.constants import VIDEO_FPS as DEFAULT_FPS
    from dfrobust.constants import VIDEO_MAX_FRAMES as DEFAULT_MAX_FRAMES

    group = parser.add_argument_group("video folders (real/ + fake/ of .mp4 etc.; needs the 'video' extra)")
    group.add_argument("--fps", type=float, default=DEFAULT_FPS, help="frames sampled per second of video (default: %(default)s)")
    group.add_argument(
        "--max-frames", type=int, default=DEFAULT_MAX_FRAMES, help="at most this many frames per clip (default: %(default)s)"
    )


def add_platform_args(parser: argparse.ArgumentParser) -> None:
    """``--robust-to``, ``--heldout``, ``--robust-eot`` and the video attack's codec options."""
    from dfrobust.constants import HELDOUT_CHAIN as DEFAULT_HELDOUT
    from dfrobust.constants import VIDEO_CRF as DEFAULT_CRF

    group = parser.add_argument_group(
        "platform (transformation-robust attacks, Hussain et al. 2021)",
        "average the attack's gradient over random draws of a chain of platform transformations (EOT; BPDA for the "
        "codecs: JPEG's gradient from a differentiable JPEG, H.264's straight through) and score the result after that "
        "chain and after a held-out one",
    )
    group.add_argument("--robust-to", metavar="CHAIN", help=f"e.g. jpeg:50-95,resize:0.5-1.0,blur:0-1: {CHAIN_HELP}")
    group.add_argument("--heldout", metavar="CHAIN", help=f"chain the attack does not see, for evaluation (default: {DEFAULT_HELDOUT})")
    group.add_argument("--robust-eot", type=int, default=8, metavar="N", help="chain draws per gradient (default: %(default)s)")
    group.add_argument("--crf", type=int, help=f"videos: H.264 CRF of the attacked clips written (default: {DEFAULT_CRF})")
    group.add_argument("--heldout-crf", type=int, metavar="CRF", help="videos: CRF of the held-out re-encoding (default: --crf + 12)")
    group.add_argument(
        "--shared-perturbation", action="store_true", help="videos: one perturbation for all frames of a clip (default: one per frame)"
    )


def run_evaluate_videos(args: argparse.Namespace) -> int:
    """`dfrobust evaluate` on a video folder: frame- and video-level AUROC/AP/EER per model."""
    from dfrobust.data.video import require_av, scan_videos
    from dfrobust.errors import DfrobustError
    from dfrobust.evaluate.video import evaluate_videos
    from dfrobust.models.loading import load_model_arg, model_display_name
    from dfrobust.utils.io import WRITTEN_BY, write_json
    from dfrobust.utils.runtime import resolve_device

    require_av("a video folder")
    if not args.fps > 0 or args.max_frames < 1:
        raise DfrobustError(f"--fps must be positive and --max-frames >= 1, got {args.fps} and {args.max_frames}")
    videos = scan_videos(args.data)  # (--json was checked by `evaluate` before it handed the folder here)
    device = resolve_device(args.device)
    results: dict[str, Any] = {}
    for path in args.model:
        model, meta = load_model_arg(path, device)
        size = meta.get("input_size")
        if size is None:
            raise DfrobustError(f"{path} has no input_size, so video frames cannot be sized for it; add input_size to the card")
        out = evaluate_videos(model, videos, (int(size[0]), int(size[1])), args.threshold, fps=args.fps,
                              max_frames=args.max_frames, batch_size=args.batch_size, device=device)  # fmt: skip
        results[model_display_name(path)] = {"path": str(path), "sha256": meta.get("sha256"), **out}
    n_real = sum(v.label for v in videos)
    print(
        f"{args.data}: {len(videos)} videos ({n_real} real, {len(videos) - n_real} fake), {args.fps:g} frames/s, at most {args.max_frames} per video"
    )
    keys = ("n", "accuracy", "auroc", "ap", "eer")
    print(f"{'model':<20} {'level':<6}" + "".join(f" {k:>8}" for k in keys))
    for name, r in results.items():
        for level in ("frame", "video"):
            cells = [r["metrics"][f"{level}_{k}"] for k in keys]
            print(
                f"{name:<20} {level:<6}"
                + "".join(f" {'-' if c is None else (f'{c:.4f}' if isinstance(c, float) else c):>8}" for c in cells)
            )
    print("video score = mean of its frames' P(real); AP and EER take fake as the positive class (DeepfakeBench).")
    if args.json:
        record = {
            WRITTEN_BY: "evaluate",
            "data": str(args.data),
            "kind": "videos",
            "fps": args.fps,
            "max_frames": args.max_frames,
            "threshold": args.threshold,
            "models": {n: {**r, **{k: r["metrics"][k] for k in ("video_auroc", "video_ap", "video_eer")}} for n, r in results.items()},
        }
        if len(results) == 1:  # one model: its video-level keys at the top too, as the consumers read them
            only = next(iter(record["models"].values()))
            record.update({k: only[k] for k in ("video_auroc", "video_ap", "video_eer")})
        write_json(args.json, record)
        print(f"wrote {args.json}")
    return 0


def check_image_platform_args(args: argparse.Namespace) -> None:
    """On images, a one-line error for the video-only options."""
    from dfrobust.errors import DfrobustError

    given = [flag for flag, value in (("--crf", args.crf), ("--heldout-crf", args.heldout_crf),
                                      ("--shared-perturbation", args.shared_perturbation or None)) if value is not None]  # fmt: skip
    if given:
        raise DfrobustError(f"{', '.join(given)} only apply to a video folder (real/ + fake/ of video files)")
    if args.heldout and not args.robust_to:
        raise DfrobustError("--heldout is the chain the robust attack did not see; give --robust-to too")


def run_attack_videos(args: argparse.Namespace, params: dict[str, Any]) -> int:
    """`dfrobust attack` on a video folder: attacked H.264 clips and their scores after decoding."""
    from dfrobust.attacks.video_run import VideoAttackConfig, run_video_attack
    from dfrobust.data.video import DEFAULT_CRF, require_av
    from dfrobust.errors import DfrobustError

    require_av("a video folder")
    if len(args.source) > 1 or args.target or args.jpeg_quality or args.heldout:
        raise DfrobustError("on a video folder, give one --source and no --target, --jpeg-quality or --heldout "
                            "(the held-out condition is --heldout-crf)")  # fmt: skip
    cfg = VideoAttackConfig(attack=args.attack, params=params, fps=args.fps, max_frames=args.max_frames, crf=args.crf if args.crf is not None else DEFAULT_CRF,
                            heldout_crf=args.heldout_crf, shared=args.shared_perturbation, robust_to=args.robust_to,
                            eot=args.robust_eot, classes=args.classes, seed=args.seed, device=args.device)  # fmt: skip
    summary = run_video_attack(args.data, args.source[0], cfg, args.out, **({"batch_size": args.batch_size} if args.batch_size else {}))
    s = summary["success"]

    def pct(c: str) -> str:
        r = s[c]
        return f"{r['rate']:6.1%} [{r['ci'][0]:.1%}, {r['ci'][1]:.1%}] of {r['n']}" if r["n"] else "n/a"

    how = "one shared perturbation per clip" if cfg.shared else "per frame"
    print(
        f"{cfg.attack} on {summary['data']['attacked']} videos ({how}{', robust to ' + cfg.robust_to if cfg.robust_to else ''}); video-level success:"
    )
    print(f"  clean                      {pct('clean')}")
    print(f"  attacked, lossless         {pct('lossless')}")
    print(f"  attacked, H.264 crf {cfg.crf:<6} {pct('decoded')}")
    print(f"  held out, H.264 crf {cfg.heldout_crf:<6} {pct('heldout')}")
    m = summary["metrics"]["decoded"]
    if m["video_auroc"] is not None:
        print(f"  after decoding: video AUROC {m['video_auroc']:.4f}, AP {m['video_ap']:.4f}, EER {m['video_eer']:.4f}; "
              f"frame AUROC {m['frame_auroc']:.4f}")  # fmt: skip
    print(f"results in {args.out}: videos/, videos.csv, summary.json")
    return 0


def add_synth_video_args(parser: argparse.ArgumentParser) -> None:
    """``data synth --videos N`` and its clip options."""
    from dfrobust.constants import VIDEO_CRF as DEFAULT_CRF

    group = parser.add_argument_group("videos (instead of images; needs the 'video' extra)")
    group.add_argument(
        "--videos",
        type=int,
        metavar="N",
        help="write N real and N fake clips in OUT/real/ and OUT/fake/ (a moving, blinking face; per-frame face swaps)",
    )
    group.add_argument("--frames", type=int, default=16, help="frames per clip (default: %(default)s)")
    group.add_argument("--fps", type=float, default=8.0, help="frame rate of the clips (default: %(default)s)")
    group.add_argument("--crf", type=int, default=DEFAULT_CRF, help="H.264 CRF of the clips (default: %(default)s)")


def run_synth_videos(args: argparse.Namespace, knobs: dict[str, float]) -> int:
    """`dfrobust data synth --videos N`."""
    from dfrobust.data.synth_video import generate_videos
    from dfrobust.errors import DfrobustError

    if args.preview is not None or args.identities is not None:
        raise DfrobustError("--preview and --identities apply to images; with --videos each clip has its own identity")
    out = generate_videos(args.out, n=args.videos, size=args.size, frames=args.frames, fps=args.fps, crf=args.crf,
                          seed=args.seed, overwrite=args.overwrite, **knobs)  # fmt: skip
    print(
        f"{out}: {args.videos} real and {args.videos} fake clips of {args.frames} frames ({args.size} px, "
        f"{args.fps:g} frames/s, H.264 crf {args.crf}) in real/ and fake/"
    )
    return 0
