"""DICOMweb with dicomweb-client: a study's image series retrieved (QIDO-RS, WADO-RS) into a folder, and a DICOM
SEG stored back (STOW-RS). Every network or server failure is one :class:`MISSUError` naming the server."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..errors import MISSUError

NOT_IMAGES = {"SEG", "SR", "PR", "KO", "RTSTRUCT", "RTPLAN", "RTDOSE", "DOC", "REG"}  # series modalities not retrieved
SERIES_UID, MODALITY = "0020000E", "00080060"  # DICOM JSON keys of QIDO-RS results


class Server:
    """A DICOMweb service root, such as ``http://localhost:8042/dicom-web``."""

    def __init__(self, url: str, timeout: float = 60.0):
        import requests
        from dicomweb_client.api import DICOMwebClient

        class Session(requests.Session):  # requests has no session-wide timeout: a silent server would block forever
            def request(self, *args, **kwargs):
                kwargs.setdefault("timeout", timeout)
                return super().request(*args, **kwargs)

        if not url.startswith(("http://", "https://")):
            raise MISSUError(f"{url}: not a DICOMweb URL (http:// or https://)")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (parsed lazily: a bad port raises here)
            # what messages show: no user name, password (user:password@host) or query
            self.url = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", "")).rstrip("/")
            self.client = DICOMwebClient(url.rstrip("/"), session=Session())
        except ValueError as exc:
            raise MISSUError(f"--dicomweb: not a valid URL ({exc})") from None

    @contextlib.contextmanager
    def _talking(self, what: str) -> Iterator[None]:
        """Network and HTTP errors as one line: the server, what was being done, and why it failed."""
        import requests

        try:
            yield
        except requests.HTTPError as exc:
            response = exc.response
            status = f"HTTP {response.status_code} {response.reason}" if response is not None else str(exc)
            raise MISSUError(f"{self.url}: {what} failed ({status})") from None
        except requests.RequestException as exc:
            reason = type(exc).__name__.replace("Error", " error").strip()
            raise MISSUError(f"{self.url}: {what} failed ({reason}: cannot reach the server)") from None

    def image_series(self, study: str, series: Sequence[str] = ()) -> list[str]:
        """The UIDs of the study's image series (only those in ``series``, when given)."""
        with self._talking(f"searching study {study}"):
            try:
                found = self.client.search_for_series(study_instance_uid=study)
            except Exception as exc:  # a 404 is how some servers say "no such study"
                if getattr(getattr(exc, "response", None), "status_code", None) == 404:
                    found = []
                else:
                    raise
        if not found:
            raise MISSUError(f"{self.url}: no study {study}")
        uids = {_value(s, SERIES_UID): _value(s, MODALITY) for s in found}
        if missing := [u for u in series if u not in uids]:
            raise MISSUError(f"{self.url}: study {study} has no series {', '.join(missing)}")
        return [u for u, modality in uids.items() if (u in series if series else modality not in NOT_IMAGES)]

    def retrieve(self, study: str, series: Sequence[str], folder: Path,
                 progress: Callable[[int, int], None] | None = None) -> None:
        """Every instance of ``series`` as a DICOM file under ``folder/<series UID>/``."""
        for done, uid in enumerate(series):
            target = folder / uid
            target.mkdir(parents=True, exist_ok=True)
            with self._talking(f"retrieving series {uid}"):
                instances = self.client.retrieve_series(study, uid)
            for index, dataset in enumerate(instances):
                dataset.save_as(str(target / f"{index:05d}.dcm"))
            if progress:
                progress(done + 1, len(series))

    def store(self, path: str | os.PathLike) -> None:
        """Store one DICOM file; refused instances are an error."""
        import pydicom

        dataset = pydicom.dcmread(str(path))
        with self._talking(f"storing {Path(path).name}"):
            response = self.client.store_instances([dataset])
        if failed := response.get("FailedSOPSequence"):  # some servers send it empty when all went well
            reason = failed[0].get("FailureReason", "no reason given")
            raise MISSUError(f"{self.url}: the server refused {Path(path).name} (failure reason {reason})")


def _value(result: dict, key: str) -> str:
    values = result.get(key, {}).get("Value", [])
    return str(values[0]) if values else ""

