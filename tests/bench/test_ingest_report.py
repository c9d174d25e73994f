"""The benchmark's own reporting: py-spy profile summaries and the timer-overlap warnings it finds in worker logs."""
from __future__ import annotations

from pathlib import Path

import os

from bench.ingest import overlap_warnings, service_cpu
from bench.profile import summary


def _lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines()]


def test_summary_gives_each_threads_tasks_and_inclusive_and_self_shares(tmp_path: Path) -> None:
    raw = tmp_path / "w.raw"
    raw.write_text(
        "thread (11): MainThread;main (cli.py:1);Handle._run (asyncio/events.py:78);Loader._consume (l.py:1);"
        "parse (app/events.py:10) 60\n"
        "thread (11): MainThread;main (cli.py:1);Handle._run (asyncio/events.py:78);fold_users (agents/stats.py:5);"
        "get (x.py:2) 30\n"
        "thread (11): MainThread;main (cli.py:1);BaseEventLoop._run_once (b.py:1);EpollSelector.select (selectors.py:451) 10\n"
        "thread (12): writer;insert (w.py:3) 100\n"
        "garbage line\n")
    main, writer = summary(raw, top=6, rate=100).split("thread writer")
    lines = _lines(main)
    assert lines[0] == "thread MainThread (11): 100 samples, ~1.0 busy-s (50.0% of all)"
    assert "60.0 Loader._consume > parse" in lines and "30.0 fold_users > get" in lines
    assert "60.0 60.0 parse (events.py:10)" in lines and "30.0 0.0 fold_users (stats.py:5)" in lines
    assert "10.0 (the event loop itself)" in lines and "10.0 EpollSelector.select (selectors.py:451)" in lines
    assert not any(line.endswith("main (cli.py:1)") for line in lines[1:]), "frames around the loop say nothing"
    assert "100 samples, ~1.0 busy-s (50.0% of all)" in writer and "100.0 100.0 insert (w.py:3)" in _lines(writer)


def test_overlap_warnings_are_read_from_the_worker_logs(tmp_path: Path) -> None:
    log = tmp_path / "worker0.log"
    log.write_text(
        "[2026-01-01 00:00:00,000] [1] [WARNING] Timer commit is overlapping (interval=2.8 runtime=38.1) \n"
        "[2026-01-01 00:00:01,000] [1] [INFO] Timer livelock woke up too late, with a drift of +1.2\n"
        "[2026-01-01 00:00:02,000] [1] [WARNING] Timer Monitor.sampler is overlapping (interval=1.0 runtime=1.5)\n")
    assert overlap_warnings([log]) == [("commit", "2.8", 38.1), ("Monitor.sampler", "1.0", 1.5)]


def test_service_cpu_sums_user_and_system_time_of_the_clickhouse_server_and_the_broker(tmp_path: Path) -> None:
    tick = os.sysconf("SC_CLK_TCK")

    def proc(pid: int, cmdline: bytes, comm: str, utime: int, stime: int) -> None:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(cmdline)
        # fields after the command name: state, ppid, pgrp, session, tty, tpgid, flags, 4 fault counts, utime, stime
        (tmp_path / str(pid) / "stat").write_text(f"{pid} ({comm}) S 1 1 1 0 -1 0 0 0 0 0 {utime} {stime} 0 0 20 0\n")

    proc(10, b"/usr/sbin/clickhouse-server\0--config-file=x.xml\0", "clickhouse-serv", 3 * tick, tick)
    proc(11, b"java\0-cp\0libs/*\0kafka.Kafka\0server.properties\0", "java", tick, tick // 2)
    proc(12, b"python\0bench.py\0", "a) b (c", 50 * tick, 0)  # a ")" in the name does not shift the fields
    proc(13, b"redis-server\0", "redis-server", 7 * tick, 0)
    (tmp_path / "self").mkdir()  # not a pid: skipped
    assert service_cpu(tmp_path) == {"clickhouse": 4.0, "kafka": 1.0 + (tick // 2) / tick}
