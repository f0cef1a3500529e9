"""`dfrobust data`: make dataset folders (synthetic faces, face swaps on photos, folder import)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from dfrobust.commands.common import add_command, add_seed_arg
from dfrobust.data.knobs import SwapKnobs

SWAP_DEFAULTS = dataclasses.asdict(SwapKnobs())


#: Position of this command in ``dfrobust --help``.
ORDER = 10


def register(subparsers: Any) -> None:
    """Add the `data` subcommand and its own subcommands."""
    parser = add_command(
        subparsers, "data", "Make datasets: synthetic faces, face swaps on photos, or import a folder",
        ["dfrobust data synth --out data/synth --n 2000 --size 64 --preview synth.png",
         "dfrobust data faceswap --real photos/ --out data/swapped --size 128",
         "dfrobust data import my_faces/ --out data/mine --size 128",
         "dfrobust data preview data/synth --out sheet.png",
         "dfrobust data verify data/synth",
         "dfrobust data crop photos/ --out crops/"],
    )  # fmt: skip
    parser.set_defaults(func=lambda args: _print_help(parser))
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    _register_synth(sub)
    _register_faceswap(sub)
    _register_import(sub)
    _register_preview(sub)
    _register_verify(sub)
    _register_crop(sub)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _add_common(p: argparse.ArgumentParser, size: int | None, size_help: str) -> None:
    p.add_argument("--out", type=Path, required=True, help="dataset folder to create")
    p.add_argument("--size", type=int, default=size, help=size_help)
    add_seed_arg(p)
    p.add_argument("--test-fraction", type=float, default=0.25, help="fraction of each class in the test split (default: 0.25)")
    p.add_argument("--preview", type=Path, metavar="FILE.png", help="also save a contact sheet of real and fake samples")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out if it holds a dataset dfrobust made with other settings (never another folder)",
    )


def _add_swap_knobs(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("difficulty of the fakes (means; each fake varies around them)")
    g.add_argument(
        "--feather",
        type=float,
        default=SWAP_DEFAULTS["feather"],
        help="blend-edge width / face width; wider hides the seam (default: %(default)s)",
    )
    g.add_argument(
        "--resample",
        type=float,
        default=SWAP_DEFAULTS["resample"],
        help="generator down-sampling factor; 1 = lossless (default: %(default)s)",
    )
    g.add_argument(
        "--color-mismatch",
        type=float,
        default=SWAP_DEFAULTS["color_mismatch"],
        help="0 = full colour transfer to the target, 1 = none (default: %(default)s)",
    )
    g.add_argument("--artifacts", type=float, default=SWAP_DEFAULTS["artifacts"],
                   help="amplitude of the generator's period-2 checkerboard (pixel units); 0 = none (default: %(default)s)")  # fmt: skip


def _knobs(args: argparse.Namespace) -> dict[str, float]:
    return {k: getattr(args, k) for k in SWAP_DEFAULTS}


def _register_synth(sub: Any) -> None:
    p = add_command(
        sub, "synth", "Render procedural faces (real) and face swaps between them (fake)",
        ["dfrobust data synth --out data/synth",
         "dfrobust data synth --out data/hard --n 4000 --size 96 --color-mismatch 0.4 --feather 0.15 --preview hard.png",
         "dfrobust data synth --videos 8 --frames 16 --fps 8 --size 64 --out data/videos   # H.264 clips, extra 'video'"],
        description="Render procedural faces with landmarks (real) and face swaps between identities (fake), "
        "half and half, with a stratified train/test split over disjoint identities. Same seed: byte-identical files.",
    )  # fmt: skip
    p.add_argument("--n", type=int, default=2000, help="number of images, half real and half fake (default: 2000)")
    _add_common(p, 64, "image side in pixels (default: 64)")
    p.add_argument("--identities", type=int, help="number of distinct identities (default: n / 8)")
    _add_swap_knobs(p)
    from dfrobust.commands.platform_args import add_synth_video_args

    add_synth_video_args(p)  # --videos N: clips in OUT/real/ and OUT/fake/ instead of images
    p.set_defaults(func=run_synth)


def _register_faceswap(sub: Any) -> None:
    p = add_command(
        sub, "faceswap", "Face swaps on a folder of real photos (dlib landmarks; extra 'faceswap')",
        ["dfrobust data faceswap --real photos/ --out data/swapped",
         "dfrobust data faceswap --real photos/ --out data/swapped64 --size 64 --resample 1.5"],
        description="Each photo with a face becomes a real image and the target of one fake whose inner face comes "
        "from another photo. Photos without a face are skipped and listed. Needs: pip install 'dfrobust[faceswap]'.",
    )  # fmt: skip
    p.add_argument("--real", type=Path, required=True, help="folder of real face photos")
    _add_common(p, 128, "image side in pixels (default: 128)")
    _add_swap_knobs(p)
    p.set_defaults(func=run_faceswap)


def _register_import(sub: Any) -> None:
    p = add_command(
        sub, "import", "Import a folder of real/fake images (SRC/{real,fake}/ or SRC/{train,test}/{real,fake}/)",
        ["dfrobust data import my_faces/ --out data/mine",
         "dfrobust data import my_faces/ --out data/mine128 --size 128 --test-fraction 0.2"],
        description="Import SRC/real/ + SRC/fake/ (split here, stratified) or SRC/{train,test}/{real,fake}/ (split kept). "
        "Any readable image becomes an RGB PNG, centre-cropped and resized to one size; unreadable files are skipped "
        "and listed.",
    )  # fmt: skip
    p.add_argument("src", type=Path, metavar="SRC", help="source folder")
    _add_common(p, None, "output side in pixels (default: shorter side of the most common image size)")
    p.set_defaults(func=run_import)


def _register_preview(sub: Any) -> None:
    p = add_command(sub, "preview", "Save a contact sheet of a dataset folder's real and fake images",
                    ["dfrobust data preview data/synth --out sheet.png"])  # fmt: skip
    p.add_argument("data", type=Path, metavar="DATA", help="dataset folder")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.png", help="PNG to write")
    p.add_argument("--per-class", type=int, default=16, help="samples of each class (default: 16)")
    add_seed_arg(p)
    p.set_defaults(func=run_preview)


def _register_verify(sub: Any) -> None:
    p = add_command(
        sub, "verify", "Check every image of a dataset folder against the sha256 in its manifest",
        ["dfrobust data verify data/synth", "dfrobust data verify data/synth --quick"],
        description="Hash every image and compare it with manifest.json (exit status 2 and a list when any differs or is "
        "missing). Commands that load a dataset check the images they read too, skipping files whose size and "
        "modification time match an earlier check.",
    )  # fmt: skip
    p.add_argument("data", type=Path, metavar="DATA", help="dataset folder")
    p.add_argument("--quick", action="store_true", help="skip files whose size and mtime match an earlier check")
    p.set_defaults(func=run_verify)


def _register_crop(sub: Any) -> None:
    from dfrobust.data.crop import DFB_SCALE, DFB_SIZE

    p = add_command(
        sub, "crop", "Crop the face of every photo as DeepfakeBench does (dlib landmarks; extra 'faceswap')",
        ["dfrobust data crop photos/ --out crops/", "dfrobust data crop photos/ --out crops128/ --size 128 --scale 1.3"],
        description="Detect the largest face of each image with dlib (offline), align five landmarks onto DeepfakeBench's "
        "template with its margin and warp to a square PNG crop (same relative paths). Images without a face are listed "
        "in OUT/no_face.txt and OUT/crops.json. Needs: pip install 'dfrobust[faceswap]'.",
    )  # fmt: skip
    p.add_argument("src", type=Path, metavar="SRC", help="folder of photos (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="folder for the crops (new, empty, or an earlier crop folder)")
    p.add_argument("--size", type=int, default=DFB_SIZE, help="crop side in pixels (default: %(default)s, DeepfakeBench's)")
    p.add_argument("--scale", type=float, default=DFB_SCALE, help="margin around the face (default: %(default)s, DeepfakeBench's)")
    p.set_defaults(func=run_crop)


def run_crop(args: argparse.Namespace) -> int:
    """`dfrobust data crop`."""
    from dfrobust.data.crop import crop_folder

    record = crop_folder(args.src, args.out, size=args.size, scale=args.scale)
    print(f"{record['n_cropped']} of {record['n_images']} images cropped to {args.out}")
    for key, what in (("no_face", "no face found"), ("unreadable", "unreadable")):
        if record[key]:
            shown = ", ".join(record[key][:10]) + (" ..." if len(record[key]) > 10 else "")
            print(f"{len(record[key])} {what} (all in {args.out}/crops.json): {shown}")
    return 0


def _summary(out: Path, preview: Path | None) -> None:
    from dfrobust.data.manifest import read_manifest
    from dfrobust.data.preview import contact_sheet

    m = read_manifest(out)
    c = m["counts"]
    h, w = m["image_size"]
    print(f"{out}: {sum(c['train'].values()) + sum(c['test'].values())} images {w}x{h}; "
          f"train {c['train']['real']} real + {c['train']['fake']} fake, test {c['test']['real']} real + {c['test']['fake']} fake")  # fmt: skip
    if preview is not None:
        print(f"contact sheet: {contact_sheet(out, preview)}")


def _print_skipped(skipped: list[dict[str, str]], total_note: str, show: int = 10) -> None:
    if not skipped:
        return
    print(f"skipped {len(skipped)} {total_note}:")
    for s in skipped[:show]:
        print(f"  {s['path']}: {s['reason']}")
    if len(skipped) > show:
        print(f"  ... and {len(skipped) - show} more (all listed in manifest.json)")


def _check_preview(args: argparse.Namespace) -> None:
    """--preview must be a file path (checked before the dataset is made)."""
    from dfrobust.data.preview import SHEET_KIND
    from dfrobust.errors import DfrobustError
    from dfrobust.utils.io import require_output_file
    from dfrobust.utils.names import is_inside

    if args.preview is not None:
        require_output_file(args.preview, SHEET_KIND, "--preview")
        if is_inside(args.preview, args.out):
            raise DfrobustError(f"--preview {args.preview} lies inside the dataset folder --out {args.out}; write it elsewhere")


def run_synth(args: argparse.Namespace) -> int:
    """`dfrobust data synth`."""
    from dfrobust.data.synthetic import generate_synthetic

    if args.videos is not None:
        from dfrobust.commands.platform_args import run_synth_videos

        return run_synth_videos(args, _knobs(args))
    _check_preview(args)
    out = generate_synthetic(args.out, n=args.n, size=args.size, seed=args.seed, test_fraction=args.test_fraction,
                             overwrite=args.overwrite, identities=args.identities, **_knobs(args))  # fmt: skip
    _summary(out, args.preview)
    return 0


def run_faceswap(args: argparse.Namespace) -> int:
    """`dfrobust data faceswap`."""
    from dfrobust.data.faceswap import make_faceswap_dataset
    from dfrobust.data.manifest import read_manifest

    _check_preview(args)
    out = make_faceswap_dataset(args.real, args.out, size=args.size, seed=args.seed, test_fraction=args.test_fraction,
                                overwrite=args.overwrite, **_knobs(args))  # fmt: skip
    info = read_manifest(out)["faceswap"]
    _print_skipped(info["skipped"], f"of {info['n_photos']} photos (unreadable or no face found)")
    _summary(out, args.preview)
    return 0


def run_import(args: argparse.Namespace) -> int:
    """`dfrobust data import`."""
    from dfrobust.data.folders import import_folder, import_report

    _check_preview(args)
    out = import_folder(args.src, args.out, size=args.size, test_fraction=args.test_fraction, seed=args.seed,
                        overwrite=args.overwrite)  # fmt: skip
    report = import_report(out)
    _print_skipped(report["skipped"], "unreadable files")
    print(f"size {report['size']}x{report['size']} ({report['size_rule']}), layout {report['layout']}")
    if report["imbalance"]:
        print(f"warning: {report['imbalance']['note']}")
    _summary(out, args.preview)
    return 0


def run_preview(args: argparse.Namespace) -> int:
    """`dfrobust data preview`."""
    from dfrobust.data.preview import SHEET_KIND, contact_sheet
    from dfrobust.utils.io import require_output_file

    require_output_file(args.out, SHEET_KIND, "--out")
    print(contact_sheet(args.data, args.out, per_class=args.per_class, seed=args.seed))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """`dfrobust data verify`."""
    from dfrobust.data.manifest import verify_dataset
    from dfrobust.errors import DfrobustError

    result = verify_dataset(args.data, full=not args.quick)
    problems = result["problems"]
    if problems:
        for item in problems[:20]:
            print(f"  {item['path']}: {item['reason']}")
        if len(problems) > 20:
            print(f"  ... and {len(problems) - 20} more")
        raise DfrobustError(f"{args.data}: {len(problems)} of {result['n']} images are missing or changed; recreate the dataset")
    print(f"{args.data}: all {result['n']} images match the manifest ({result['hashed']} hashed)")
    return 0
