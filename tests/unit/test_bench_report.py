"""The bench's report, without running anything: a failed call is counted with what it said,
and the report prints that next to the count."""

import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
spec = importlib.util.spec_from_file_location("bench_run", os.path.join(REPO, "bench", "run.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_a_failed_call_is_counted_with_its_message():
    res = {"errors": 0}
    bench.count_error(res, "ADD", 0, "{}")
    assert res == {"errors": 0}
    for _ in range(2):
        bench.count_error(res, "ADD", 1, '{"code": 999,\n "msg": "x"}')
    for k in range(5):
        bench.count_error(res, "DEL", 2, f"oops {k} " + "y" * 400)
    assert res["errors"] == 7
    assert res["error_samples"][0] == 'ADD: rc 1: {"code": 999, "msg": "x"}'  # one line
    assert len(res["error_samples"]) == 3  # distinct, the first three only
    assert all(len(m) <= 320 for m in res["error_samples"])


def _op(ms):
    return {"median_ms": ms, "p95_ms": ms, "max_ms": ms, "n": 2}


def _impl(ms, **extra):
    return {"VERSION": _op(ms), "ADD": _op(ms), "CHECK": _op(ms), "DEL": _op(ms), "check_failures": 0,
            "errors": 0} | extra


def test_report_prints_what_the_failed_calls_said():
    np_, ref = "netplug", bench.REF
    seq = {"distinct_addresses": True, "ports_answering": 2, "leftovers": {}, "add_by_attached": {"0-49": 10.0}}
    r = {"params": {"n": 2, "repeat": 2, "concurrency": 2},
         "single": {np_: _impl(10.0, yardstick_ms=12.0), ref: _impl(80.0)},
         "plugin_peak_rss_mb": {np_: 8.0, ref: 5.0},
         "sequential": {np_: _impl(10.0, **seq, daemon_peak_rss_mb=15.0), ref: _impl(90.0, **seq)},
         "concurrent": {n: {"add_per_s": 1.0, "del_per_s": 1.0, "errors": 0, "duplicate_addresses": 0,
                            "leftovers": {}} for n in (np_, ref)}}
    r["concurrent"][ref].update(errors=1, error_samples=["ADD: rc 1: portmap said no"])
    r["targets"] = bench.targets(r)
    text = bench.render(r)
    assert "what the failed calls said" in text
    assert f"  concurrent, {ref}: ADD: rc 1: portmap said no" in text
    assert r["targets"]["concurrency: no error, no duplicate"]  # the peer's failure is not netplug's
    r["concurrent"][ref].update(errors=0, error_samples=[])
    assert "what the failed calls said" not in bench.render(r)
