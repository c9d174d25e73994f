"""Sample a running process with py-spy and summarise where its CPU time goes.

    .venv/bin/python bench/profile.py worker0.raw [--top 25]   # summarise a recorded profile

`Recorder` attaches `py-spy record --format raw` to a pid (bench/ingest.py
`--profile DIR` does this for every worker over the measured span); the raw
file holds one line per distinct stack, `frame;frame;...;frame count`, and
py-spy leaves idle threads out (blocked in a system call), so a sample is a
moment the thread was busy: on a CPU, or runnable and waiting for one (on a
loaded machine "busy seconds" exceed CPU seconds; the shares still say where
the work is). `summary` prints, per thread, the share of samples
whose stack passes through each function (inclusive) and the share spent in it
(self): enough to say where the time goes without a flame-graph viewer.
"""
from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_THREAD = re.compile(r"^thread \((?P<id>\w+)\): (?P<name>.*)$")


def py_spy() -> str:
    """The py-spy next to this interpreter (bench extra), else on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    found = str(local) if local.exists() else shutil.which("py-spy")
    if not found:
        raise RuntimeError("py-spy not found: install the bench extra (make venv) or `pip install py-spy`")
    return found


class Recorder:
    """`py-spy record` of one pid until `stop()` (SIGINT makes py-spy write its file); with `gil`,
    only the samples of the thread holding the GIL (what serialises the worker's Python)."""

    def __init__(self, pid: int, output: Path, rate: int = 100, gil: bool = False) -> None:
        self.output = output
        output.parent.mkdir(parents=True, exist_ok=True)
        # --nonblocking: sampling does not pause the worker (what we measure keeps its pace)
        self.process = subprocess.Popen(
            [py_spy(), "record", "--pid", str(pid), "--format", "raw", "--threads", "--function",
             "--nonblocking", "--rate", str(rate), "--output", str(output), *(["--gil"] if gil else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self, timeout: float = 60.0) -> Path:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            _, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        if not self.output.exists():
            raise RuntimeError(f"py-spy wrote no profile to {self.output}: {err.decode(errors='replace')[-500:]}")
        return self.output


def _function(frame: str) -> str:
    """'name (path/to/module.py:12)' -> 'name (module.py:12)': short and still unambiguous enough."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rstrip(')').rsplit('/', 1)[-1]})" if where else name


def _in_task(frames: list[str]) -> list[str] | None:
    """The frames of the asyncio task or callback a sample ran in: those after the event
    loop's last `Handle._run`; [] for the loop's own work (waiting in select, scheduling);
    None outside an event loop (an executor thread)."""
    runs = [i for i, frame in enumerate(frames) if frame.startswith("Handle._run ")]
    if runs:
        return frames[runs[-1] + 1:]
    return [] if any(frame.startswith("BaseEventLoop._run_once ") for frame in frames) else None


def summary(raw: Path, top: int = 25, rate: int = 100) -> str:
    """Per thread: samples (and busy seconds at `rate` samples/s); for an event-loop thread the
    share of each task (what kept the loop busy); then the `top` functions by inclusive share
    (within tasks, for an event-loop thread) and by self share."""
    threads: dict[str, tuple[Counter, Counter, Counter, list[int]]] = {}
    for line in raw.read_text(errors="replace").splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        count, frames = int(match["count"]), match["stack"].split(";")
        thread = _THREAD.match(frames[0])
        if thread:
            name, frames = f"{thread['name']} ({thread['id']})", frames[1:]
        else:
            name = "?"
        inclusive, self_time, tasks, total = threads.setdefault(name, (Counter(), Counter(), Counter(), [0]))
        total[0] += count
        in_task = _in_task(frames)
        if in_task:
            tasks[" > ".join(f.partition(" (")[0] for f in in_task[:2])] += count
        elif in_task is not None:
            tasks["(the event loop itself)"] += count
        # in an event-loop thread only the frames inside tasks: the ones around the loop are in every sample
        for function in {_function(f) for f in (frames if in_task is None else in_task)}:
            inclusive[function] += count
        if frames:
            self_time[_function(frames[-1])] += count
    every = sum(total[0] for *_, total in threads.values()) or 1
    out = []
    for name, (inclusive, self_time, tasks, total) in sorted(threads.items(), key=lambda t: -t[1][3][0]):
        n = total[0]
        out.append(f"thread {name}: {n} samples, ~{n / rate:.1f} busy-s ({100 * n / every:.1f}% of all)")
        if tasks:
            out.append("  event-loop share  task > first call")
            for task, count in tasks.most_common(top):
                out.append(f"  {100 * count / n:16.1f}  {task}")
        out.append("  inclusive%  self%  function")
        for function, count in inclusive.most_common(top):
            out.append(f"  {100 * count / n:10.1f}  {100 * self_time[function] / n:5.1f}  {function}")
        out.append("  top self%")
        for function, count in self_time.most_common(top // 2):
            out.append(f"  {'':10}  {100 * count / n:5.1f}  {function}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw", type=Path, help="a py-spy --format raw file")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rate", type=int, default=100, help="samples per second it was recorded at")
    args = parser.parse_args()
    print(summary(args.raw, args.top, args.rate))


if __name__ == "__main__":
    main()
