"""Evaluation metrics: codec quality (mel distance, SI-SNR, PESQ, STOI) and ASR word error."""
