"""Tests for benchmarks/compare.py: ratios in the right direction, refusals, the table."""

import json
import os

import pytest

from benchmarks import compare as cmp

OURS = {"suite": "reference", "date": "2026-12-03T09:00:00+00:00", "peak_matmul_gflops": 120.0,
        "machine": {"cpu": "AMD EPYC", "cpu_count": 2, "device": "cpu"},
        "semantic_sample_tok_per_s": 3000.0, "semantic_train_step_s": 0.05,
        "codec_train_step_s": 40.0}
PEER = {"library": {"audiolm_pytorch": "2.4.0", "cpu": "x86_64"},
        "summary": {"semantic_sample_tok_per_s": 100.0, "semantic_train_step_s": 0.15,
                    "soundstream_train_generator_step_s": 30.0}}


def test_ratios_are_ours_over_peer_for_rates_and_peer_over_ours_for_times():
  result = cmp.compare(OURS, PEER, {"torch_peak_matmul_gflops": 200.0, "threads": 2})
  rows = {r["ours_key"]: r for r in result["rows"]}
  assert rows["semantic_sample_tok_per_s"]["ratio"] == pytest.approx(30.0)
  assert rows["semantic_sample_tok_per_s"]["met"]
  assert rows["semantic_train_step_s"]["ratio"] == pytest.approx(3.0)
  assert rows["codec_train_step_s"]["ratio"] == pytest.approx(0.75)
  assert not rows["codec_train_step_s"]["met"]
  assert "ratio" not in rows["fine_train_step_s"]  # Missing on both sides: no ratio.
  assert result["short"] == ["codec training step, batch 8 x 1 s"] and result["met"] == 2
  assert result["machine"]["torch_peak_matmul_gflops"] == 200.0
  table = cmp.markdown(result)
  assert "| sampling semantic, batch 1, KV cache (tok/s) | 100 | 3000 | 30.00x | 30x |" in table
  assert "**0.75x**" in table and "torch 200 GFLOP/s" in table


def test_refuses_results_of_different_sittings_or_kinds():
  peer_time = cmp.datetime.datetime.fromisoformat(OURS["date"]).timestamp() + 7 * 3600
  with pytest.raises(SystemExit, match="apart"):
    cmp.compare(OURS, PEER, peer_time=peer_time)
  cmp.compare(OURS, PEER, peer_time=peer_time, max_hours=8)
  with pytest.raises(SystemExit, match="summary"):
    cmp.compare(OURS, {"library": {}})
  with pytest.raises(SystemExit, match="reference"):
    cmp.compare({**OURS, "suite": "scaling"}, PEER)


def test_command_line_writes_json(tmp_path):
  ours, peer = tmp_path / "ours.json", tmp_path / "peer.json"
  ours.write_text(json.dumps(OURS))
  peer.write_text(json.dumps(PEER))
  os.utime(peer, (cmp.datetime.datetime.fromisoformat(OURS["date"]).timestamp(),) * 2)
  out = tmp_path / "compare.json"
  assert cmp.main(["--ours", str(ours), "--peer", str(peer), "--json", str(out),
                   "--no_save"]) == 0
  assert json.loads(out.read_text())["peer_json"] == PEER
  with pytest.raises(SystemExit, match="cannot read"):
    cmp.main(["--ours", str(tmp_path / "missing.json"), "--peer", str(peer), "--no_save"])
