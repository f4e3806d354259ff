"""Reading, checking and writing images; geometry; MONAI transforms; datasets."""
