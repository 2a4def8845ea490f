"""The benchmark runs end to end, small: every phase, both implementations, the correctness
checks it makes on each run and the report. Its timings are not judged here (that is what a
full `bench/run.py` is for, on a quiet machine): only that it measured them."""

import json
import os
import subprocess
import sys

import pytest

from netns_tools import netns_list

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/lib/cni/bridge"),
                                reason="the reference plugins (containernetworking-plugins) are not installed")


def explained(res):
    """Every failed call the bench counts comes with what it said."""
    assert bool(res["errors"]) == bool(res.get("error_samples")), res


def test_small_bench_runs_and_checks_correctness(tmp_path):
    out = tmp_path / "bench.json"
    p = subprocess.run([sys.executable, os.path.join(REPO, "bench", "run.py"), "--n", "6", "--repeat", "2",
                        "--concurrency", "2", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(out.read_text())
    np_, ref = "netplug", "reference (bridge+host-local+portmap)"
    single = r["single"]
    for name in (np_, "netplug (no daemon)"):
        assert single[name]["errors"] == 0, single[name].get("error_samples")
    for name in (np_, ref, "netplug (no daemon)"):
        explained(single[name])
        for op in ("VERSION", "ADD", "DEL"):
            assert single[name][op]["n"] == 2 and single[name][op]["median_ms"] > 0
    assert single[np_]["check_failures"] == 0
    assert single[np_]["yardstick_ms"] > 0
    for name in (np_, ref):
        seq, conc = r["sequential"][name], r["concurrent"][name]
        explained(seq)
        explained(conc)
        if name == ref:
            continue  # the peer's own failures are measured and reported, not ours to pass
        assert conc["duplicate_addresses"] == 0
        assert seq["errors"] == 0 and conc["errors"] == 0, (seq.get("error_samples"), conc.get("error_samples"))
        assert seq["distinct_addresses"] and seq["ports_answering"] == 6
        assert seq["leftovers"] == conc["leftovers"] == {"rules": 0, "ipam_files": 0, "veths": 0}
    assert r["sequential"][np_]["check_failures"] == 0
    assert 0 < r["sequential"][np_]["daemon_peak_rss_mb"] <= 100
    assert 0 < r["plugin_peak_rss_mb"][np_] <= 40
    assert "VERSION median <= bare interpreter start" in r["targets"]
    assert "targets:" in p.stdout and "VERSION median_ms" in p.stdout
    assert not [n for n in netns_list() if n.startswith("bench-")], "the bench left namespaces behind"
