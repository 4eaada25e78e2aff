"""The benchmark commands run and report the fields the README and notes quote (numbers come from real runs)."""

import json

from tiny_model import make_model_folder

from editmgt_core import bench


def test_forward_bench_reports_timings_and_memory(capsys):
    bench.main(["forward", "--config", "tiny", "--grid", "8", "--text-len", "16", "--capture-from", "2",
                "--capture-count", "2", "--repeats", "1"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert out["capture_layers"] == [2, 3]
    assert out["median_ms"] > 0 and out["median_ms_capture"] > 0 and out["peak_rss_gb"] > 0


def test_edit_bench_splits_stages(tmp_path, capsys):
    folder = make_model_folder(tmp_path / "tiny")
    bench.main(["edit", "--model", str(folder), "--steps", "3", "--repeats", "1", "--instruction", "make it red"])
    out = json.loads(capsys.readouterr().out)
    assert set(out["plain"]["parts_ms"]) == {"text", "encode", "sampling", "decode"}
    assert out["hold"]["lam"] == 0.3 and "hold_overhead_sampling" in out
