"""Data: audio I/O and checks, built-in and folder corpora (TFDS, array_record), grain pipelines."""
