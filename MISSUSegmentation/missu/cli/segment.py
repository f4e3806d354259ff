"""``missu segment``: one case, a batch over a folder or a CSV of cases, or a study on a DICOMweb server."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ..errors import MISSUError

# The engine (torch, MONAI), DICOM and tqdm load when the command runs: every ``missu`` call builds this parser.

EXAMPLES = """examples:
  missu segment --input case.nii.gz --output case.seg.nrrd
  missu segment --input dicom/study1 --output study1-seg.dcm          # a DICOM study folder -> DICOM SEG
  missu segment --input dicom/study1 --series 1.2.840... --output seg.dcm   # when several series could fit
  missu segment --batch dicom/ --format dcm --output segs/             # one sub-folder per study
  missu segment --dicomweb http://localhost:8042/dicom-web --study 1.2.840...   # PACS (Orthanc): SEG stored back
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment one case, a batch of cases, or a study on a PACS",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="la-mri", help="bundle name or path (default: la-mri)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--input", nargs="+", metavar="FILE", help="one file or DICOM folder per input channel "
                      "(in the card's order, matched by name, or as NAME=FILE), or one DICOM study folder whose "
                      "series are matched to the inputs (modality, series description, the card's aliases)")
    what.add_argument("--batch", type=Path, metavar="FOLDER_OR_CSV",
                      help="a folder of cases (image files, or one sub-folder of images or DICOM per case) or a CSV")
    what.add_argument("--dicomweb", metavar="URL", help="a DICOMweb server (e.g. http://localhost:8042/dicom-web): "
                      "retrieve --study, segment it and store the DICOM SEG back")
    p.add_argument("--study", metavar="UID", help="with --dicomweb: the Study Instance UID")
    p.add_argument("--series", nargs="+", metavar="UID", help="the series to use (a DICOM study folder, or --dicomweb)")
    p.add_argument("--output", type=Path, help="segmentation to write: .seg.nrrd (3D Slicer) or .dcm (DICOM SEG, for "
                   "DICOM input); with --batch, a folder; with --dicomweb, an optional local copy of the SEG")
    p.add_argument("--format", choices=("seg.nrrd", "dcm"), default="seg.nrrd",
                   help="with --batch: write CASE.seg.nrrd or CASE.dcm (DICOM SEG) (default: seg.nrrd)")
    p.add_argument("--label-out", type=Path, help="also write a label map (.nii.gz, .nrrd, .mha; a folder with --batch)")
    p.add_argument("--uncertainty-out", type=Path,
                   help="also write the TTA uncertainty map (implies --tta; a folder with --batch)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--backend", default="auto",
                   help="runtime of the network: auto (by machine: OpenVINO on CPUs without AMX when installed, "
                        "PyTorch otherwise), torch or openvino (default: auto)")
    p.add_argument("--precision", choices=("auto", "fp32"), default="auto",
                   help="auto: bf16 where the hardware computes it natively (CUDA; CPUs with AMX or AVX-512 BF16), "
                        "float32 elsewhere; fp32: float32 everywhere (default: auto)")
    p.add_argument("--tta", action="store_true", help="average the 8 flips (slower, a little more accurate)")
    p.add_argument("--overlap", type=float, help="sliding-window overlap in [0, 1) (default: the card's)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout: progress, per-case summary, errors")
    p.set_defaults(func=run)


def _summary_line(case: str, result) -> str:
    volumes = ", ".join(f"{name} {v['ml']:.1f} mL ({v['voxels']} vx)" for name, v in result.volumes.items())
    return f"{case}: {volumes}; {result.seconds:.1f} s"


def _segment_case(segmenter, case: str, inputs: list[str], outputs: dict, args, progress=None) -> dict:
    from ..data.atomic import atomic_paths, check_outputs
    from ..data.cases import resolve_inputs
    from ..data.segfile import write_image, write_seg_nrrd
    from ..dicom.series import Series

    sources = resolve_inputs(segmenter.card, inputs, args.series)
    target = outputs["segmentation"]
    dicom_seg = target.name.lower().endswith(".dcm")
    if dicom_seg and not isinstance(sources[0], Series):
        raise MISSUError(f"{target}: a DICOM SEG references a DICOM series; the input {sources[0]} is not DICOM")
    check_outputs(outputs, [s.folder if isinstance(s, Series) else s for s in sources], args.overwrite)
    if dicom_seg:
        from ..dicom.seg import check_seg_source

        check_seg_source(sources[0])
    result = segmenter.segment_files(sources, uncertainty=outputs.get("uncertainty") is not None, progress=progress)
    wanted = {role: path for role, path in outputs.items() if path is not None}
    with atomic_paths(list(wanted.values()), args.overwrite) as temporaries:
        temporary = dict(zip(wanted, temporaries))
        if dicom_seg:
            from ..dicom.seg import write_dicom_seg

            write_dicom_seg(result.labels, segmenter.card, sources[0], temporary["segmentation"])
        else:
            write_seg_nrrd(result.labels, segmenter.card, temporary["segmentation"])
        if "labels" in temporary:
            write_image(result.labels, temporary["labels"])
        if "uncertainty" in temporary:
            write_image(result.uncertainty, temporary["uncertainty"])
    print(json.dumps({"event": "case", "case": case, "seconds": round(result.seconds, 2), "volumes": result.volumes})
          if args.json else _summary_line(case, result))
    return result.volumes


def _segment_one(segmenter, case: str, inputs: list[str], outputs: dict, args) -> dict:
    """One case with progress: JSON events (the Slicer panel) or a tqdm bar."""
    from tqdm import tqdm

    if args.json:  # machine-readable progress for the Slicer panel, one JSON event per line
        def progress(fraction: float, message: str) -> None:
            print(json.dumps({"event": "progress", "fraction": round(fraction, 4), "message": message}), flush=True)
        return _segment_case(segmenter, case, inputs, outputs, args, progress)
    with tqdm(total=100, desc="segment", unit="%", disable=None, file=sys.stderr) as bar:
        def progress(fraction: float, message: str) -> None:
            bar.update(round(fraction * 100) - bar.n)
            bar.set_postfix_str(message)
        return _segment_case(segmenter, case, inputs, outputs, args, progress)


def _segment_dicomweb(segmenter, args: argparse.Namespace) -> int:
    """Retrieve the study's image series, segment them, and store the DICOM SEG back: only once it is written."""
    from tqdm import tqdm

    from ..dicom.web import Server

    if not args.study:
        raise MISSUError("--dicomweb needs --study UID")
    if args.output and not args.output.name.lower().endswith(".dcm"):
        raise MISSUError(f"{args.output}: with --dicomweb the output is the DICOM SEG: give a .dcm path")
    from ..data.atomic import check_outputs

    server = Server(args.dicomweb)
    outputs = {"segmentation": args.output, "labels": args.label_out, "uncertainty": args.uncertainty_out}
    check_outputs(outputs, [], args.overwrite)  # before any download
    series = server.image_series(args.study, args.series or ())
    with tempfile.TemporaryDirectory(prefix="missu-dicomweb-") as scratch:
        study = Path(scratch) / "study"
        with tqdm(total=len(series), desc="retrieve", unit="series", disable=None, file=sys.stderr) as bar:
            server.retrieve(args.study, series, study, progress=lambda done, total: bar.update(done - bar.n))
        outputs["segmentation"] = seg = args.output or Path(scratch) / "seg.dcm"
        _segment_one(segmenter, args.study, [str(study)], outputs, args)
        server.store(seg)
    print(f"DICOM SEG stored in study {args.study} on {server.url}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data.cases import cases_from_csv, cases_from_folder
    from .models import fetch
    from .startup import monai_without_unused_imports

    with monai_without_unused_imports():
        from ..inference import Segmenter

    if args.output is None and not args.dicomweb:
        raise MISSUError("--output is required (a .seg.nrrd or .dcm file, or a folder with --batch)")
    if args.study and not args.dicomweb:
        raise MISSUError("--study goes with --dicomweb URL")
    if args.series and args.batch:
        raise MISSUError("--series chooses the series of one study: use it with --input or --dicomweb, not --batch")
    segmenter = Segmenter(fetch(args.model, args.json), device=args.device, tta=args.tta or bool(args.uncertainty_out),
                          overlap=args.overlap, backend=args.backend, amp=args.precision == "auto")
    if args.dicomweb:
        return _segment_dicomweb(segmenter, args)
    if args.input:
        outputs = {"segmentation": args.output, "labels": args.label_out, "uncertainty": args.uncertainty_out}
        _segment_one(segmenter, args.output.name, args.input, outputs, args)
        return 0

    source = args.batch
    if not source.exists():
        raise MISSUError(f"{source}: no such folder or CSV file")
    for folder in filter(None, (args.output, args.label_out, args.uncertainty_out)):
        if source.is_dir() and folder.resolve().is_relative_to(source.resolve()):
            raise MISSUError(f"{folder}: lies inside the batch folder {source}, whose every sub-folder is read as a "
                             "case; write the outputs outside it")
    cases = cases_from_csv(source, segmenter.card) if source.is_file() else cases_from_folder(source, segmenter.card)
    failures = 0
    for case, inputs in tqdm(cases.items(), desc="cases", unit="case", disable=None, file=sys.stderr):
        outputs = {
            "segmentation": args.output / f"{case}.{args.format}",
            "labels": args.label_out / f"{case}.nii.gz" if args.label_out else None,
            "uncertainty": args.uncertainty_out / f"{case}.nii.gz" if args.uncertainty_out else None,
        }
        try:
            _segment_case(segmenter, case, inputs, outputs, args)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one case's failure, whatever it is, does not stop the others
            failures += 1
            message = str(exc) if isinstance(exc, (MISSUError, OSError)) else f"{type(exc).__name__}: {exc}"
            print(json.dumps({"event": "case_failed", "case": case, "message": message}) if args.json
                  else f"missu segment: case {case} failed: {message}", file=sys.stdout if args.json else sys.stderr)
    summary = f"{len(cases) - failures} of {len(cases)} case(s) segmented into {args.output}"
    print(json.dumps({"event": "batch", "cases": len(cases), "failed": failures, "message": summary}) if args.json
          else summary, file=sys.stdout if args.json else sys.stderr)
    return 1 if failures else 0
