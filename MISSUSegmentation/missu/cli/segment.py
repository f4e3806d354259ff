"""``missu segment``: one case, or a batch over a folder or a CSV of cases."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from ..data.atomic import check_outputs
from ..data.cases import cases_from_csv, cases_from_folder, match_channels
from ..data.segfile import write_image, write_seg_nrrd
from ..errors import MISSUError
from ..inference import Segmenter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment one case, or a batch of cases")
    p.add_argument("--model", default="la-mri", help="bundle name or path (default: la-mri)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--input", nargs="+", metavar="FILE", help="one file or DICOM folder per input channel "
                      "(in the card's order, matched by name, or as NAME=FILE)")
    what.add_argument("--batch", type=Path, metavar="FOLDER_OR_CSV", help="a folder of cases or a CSV of cases")
    p.add_argument("--output", type=Path, help="segmentation to write (.seg.nrrd); with --batch, a folder")
    p.add_argument("--label-out", type=Path, help="also write a label map (.nii.gz, .nrrd, .mha; a folder with --batch)")
    p.add_argument("--uncertainty-out", type=Path,
                   help="also write the TTA uncertainty map (implies --tta; a folder with --batch)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--tta", action="store_true", help="average the 8 flips (slower, a little more accurate)")
    p.add_argument("--overlap", type=float, help="sliding-window overlap in [0, 1) (default: the card's)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout: progress, per-case summary, errors")
    p.set_defaults(func=run)


def _summary_line(case: str, result) -> str:
    volumes = ", ".join(f"{name} {v['ml']:.1f} mL ({v['voxels']} vx)" for name, v in result.volumes.items())
    return f"{case}: {volumes}; {result.seconds:.1f} s"


def _segment_case(segmenter: Segmenter, case: str, inputs: list[str], outputs: dict, args, progress=None) -> dict:
    paths = match_channels(segmenter.card, inputs)
    check_outputs(outputs, paths, args.overwrite)  # refuse before spending time on inference
    result = segmenter.segment_files(paths, uncertainty=outputs.get("uncertainty") is not None, progress=progress)
    write_seg_nrrd(result.labels, segmenter.card, outputs["segmentation"], args.overwrite)
    if outputs.get("labels"):
        write_image(result.labels, outputs["labels"], args.overwrite)
    if outputs.get("uncertainty"):
        write_image(result.uncertainty, outputs["uncertainty"], args.overwrite)
    print(json.dumps({"event": "case", "case": case, "seconds": round(result.seconds, 2), "volumes": result.volumes})
          if args.json else _summary_line(case, result))
    return result.volumes


def run(args: argparse.Namespace) -> int:
    if args.output is None:
        raise MISSUError("--output is required (a .seg.nrrd file, or a folder with --batch)")
    segmenter = Segmenter(args.model, device=args.device, tta=args.tta or bool(args.uncertainty_out),
                          overlap=args.overlap)
    if args.input:
        outputs = {"segmentation": args.output, "labels": args.label_out, "uncertainty": args.uncertainty_out}
        if args.json:  # machine-readable progress for the Slicer panel, one JSON event per line
            def progress(fraction: float, message: str) -> None:
                print(json.dumps({"event": "progress", "fraction": round(fraction, 4), "message": message}), flush=True)
            _segment_case(segmenter, args.output.name, args.input, outputs, args, progress)
            return 0
        with tqdm(total=100, desc="segment", unit="%", disable=None, file=sys.stderr) as bar:
            def progress(fraction: float, message: str) -> None:
                bar.update(round(fraction * 100) - bar.n)
                bar.set_postfix_str(message)
            _segment_case(segmenter, args.output.name, args.input, outputs, args, progress)
        return 0

    source = args.batch
    if not source.exists():
        raise MISSUError(f"{source}: no such folder or CSV file")
    cases = cases_from_csv(source, segmenter.card) if source.is_file() else cases_from_folder(source, segmenter.card)
    failures = 0
    for case, inputs in tqdm(cases.items(), desc="cases", unit="case", disable=None, file=sys.stderr):
        outputs = {
            "segmentation": args.output / f"{case}.seg.nrrd",
            "labels": args.label_out / f"{case}.nii.gz" if args.label_out else None,
            "uncertainty": args.uncertainty_out / f"{case}.nii.gz" if args.uncertainty_out else None,
        }
        try:
            _segment_case(segmenter, case, inputs, outputs, args)
        except (MISSUError, OSError) as exc:
            failures += 1
            print(f"missu segment: case {case} failed: {exc}", file=sys.stderr)
    print(f"{len(cases) - failures} of {len(cases)} case(s) segmented into {args.output}", file=sys.stderr)
    return 1 if failures else 0
