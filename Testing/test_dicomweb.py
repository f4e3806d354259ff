"""A PACS round trip: a real Orthanc with its DICOMweb plugin (Debian packages ``orthanc``, ``orthanc-dicomweb``),
started on the loopback address with a temporary storage folder. The source study is uploaded (STOW-RS),
``missu segment --dicomweb`` retrieves and segments it and stores the DICOM SEG back, and the SEG is queried and
checked. Skipped where Orthanc is not installed, unless ``MISSU_REQUIRE_TOOLS`` is set (CI)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import missing_tool
from dicom_fixtures import iod_errors, la_volume, study, write_report, write_series

from missu.bundle import read_card, resolve_bundle
from missu.cli import main
from missu.dicom.seg import read_dicom_seg
from missu.dicom.series import scan

CASE = "la_0RZDK210BSMWAA6467LU"
PLUGIN_FOLDERS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """The DICOMweb root of an Orthanc serving only this machine, stopped (and its storage deleted) afterwards."""
    binary = shutil.which("Orthanc")
    plugins = [p for folder in PLUGIN_FOLDERS for p in Path(folder).glob("libOrthancDicomWeb.so*")]
    if binary is None or not plugins:
        missing_tool("Orthanc with its DICOMweb plugin (Debian packages orthanc, orthanc-dicomweb)")
    root = tmp_path_factory.mktemp("orthanc")
    port = _free_port()
    config = {
        "Name": "missu-test", "StorageDirectory": str(root / "storage"), "IndexDirectory": str(root / "index"),
        "HttpPort": port, "DicomServerEnabled": False, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "Plugins": [str(plugins[0])], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    log = open(root / "orthanc.log", "w")
    server = subprocess.Popen([binary, str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{url}/dicom-web/studies", timeout=1):
                    break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"Orthanc exited: {(root / 'orthanc.log').read_text()[-2000:]}")
                time.sleep(0.1)
        else:
            pytest.fail("Orthanc did not answer within 30 s")
        yield f"{url}/dicom-web"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def client(orthanc):
    from dicomweb_client.api import DICOMwebClient

    return DICOMwebClient(orthanc)


@pytest.fixture(scope="module")
def uploaded(tmp_path_factory, client):
    """A study on the server as a scanner sends it: localizer, LGE series and a report; and its local copy."""
    folder = tmp_path_factory.mktemp("pacs-study")
    patient = study("PACS01")
    image = la_volume(CASE, shrink=2)
    write_series(image[:, :, 20:23], folder, patient, number=1, description="Localizer")
    lge, _ = write_series(image, folder, patient, number=3, description="LGE MRI axial 3D")
    write_report(folder, patient)
    client.store_instances([pydicom.dcmread(p) for p in sorted(folder.iterdir())])
    return folder, str(patient.StudyInstanceUID), lge


def _seg_series(client, study_uid: str) -> list[dict]:
    return client.search_for_series(study_instance_uid=study_uid, search_filters={"Modality": "SEG"})


def test_pacs_round_trip(tmp_path, orthanc, client, uploaded):
    folder, study_uid, lge = uploaded
    assert main(["segment", "--dicomweb", orthanc, "--study", study_uid]) == 0

    [found] = _seg_series(client, study_uid)
    [seg] = client.retrieve_series(study_uid, found["0020000E"]["Value"][0])
    seg.save_as(tmp_path / "seg.dcm")
    assert iod_errors(tmp_path / "seg.dcm") == []
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == lge
    [source] = [s for s in scan(folder) if s.uid == lge]
    from_pacs = sitk.GetArrayFromImage(read_dicom_seg(tmp_path / "seg.dcm", source, read_card(resolve_bundle("la-mri"))))

    local = tmp_path / "local.nii.gz"  # the same study segmented from the folder: the same labels
    assert main(["segment", "--input", str(folder), "--output", str(tmp_path / "local.seg.nrrd"),
                 "--label-out", str(local)]) == 0
    assert np.array_equal(from_pacs, sitk.GetArrayFromImage(sitk.ReadImage(str(local))))
    expert = sitk.GetArrayFromImage(la_volume(CASE, label=True, shrink=2)) > 0
    assert 2 * (expert & (from_pacs > 0)).sum() / (expert.sum() + (from_pacs > 0).sum()) > 0.8


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_pacs_failures_are_one_line_and_store_nothing(tmp_path, orthanc, client, uploaded, capsys):
    folder, study_uid, _ = uploaded
    before = len(_seg_series(client, study_uid))

    closed = f"http://127.0.0.1:{_free_port()}/dicom-web"
    assert main(["segment", "--dicomweb", closed, "--study", study_uid]) == 1
    assert "cannot reach the server" in _one_error_line(capsys)

    assert main(["segment", "--dicomweb", orthanc, "--study", "1.2.3.4"]) == 1
    assert _one_error_line(capsys).endswith(f"{orthanc}: no study 1.2.3.4")

    assert main(["segment", "--dicomweb", orthanc, "--study", study_uid, "--series", "1.2.3.5"]) == 1
    assert f"study {study_uid} has no series 1.2.3.5" in _one_error_line(capsys)

    ct = study("PACS02")  # a study the model cannot take: refused after retrieval, before anything is stored
    write_series(la_volume(CASE, shrink=4), tmp_path / "ct", ct, modality="CT", description="CT")
    client.store_instances([pydicom.dcmread(p) for p in sorted((tmp_path / "ct").iterdir())])
    assert main(["segment", "--dicomweb", orthanc, "--study", str(ct.StudyInstanceUID)]) == 1
    assert "no series for model la-mri's input 'image' (MR)" in capsys.readouterr().err
    assert _seg_series(client, str(ct.StudyInstanceUID)) == []
    assert len(_seg_series(client, study_uid)) == before
