"""DICOM: series selection from study folders, DICOM SEG output, and DICOMweb retrieval and storage."""
