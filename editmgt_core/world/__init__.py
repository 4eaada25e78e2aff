"""The edit world and its trainers: synthetic records and their wording, the VQ and transformer trainers."""
