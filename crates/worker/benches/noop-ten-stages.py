#!/usr/bin/env python3
"""No-op rebuild of issue #11's scenario: ten stages over a 20,000-file context.

Usage: noop-ten-stages.py IMG [RUNS] [WORKDIR]. Prints each run's time, the median and the
median rchar (bytes read by img, from this process's /proc/self/io around each run).
"""
import os, subprocess, sys, time, statistics
# Works in the directory given as the third argument (default: target/cache-bench).
root = os.path.abspath(sys.argv[3] if len(sys.argv) > 3 else "target/cache-bench")
img = sys.argv[1]
ctx = os.path.join(root, "ctx")
state = os.path.join(root, "state")
if not os.path.exists(ctx):
    os.makedirs(ctx)
    n = 0
    for d in range(9):
        for i in range(2223 if d < 8 else 20000 - 8 * 2223):
            p = os.path.join(ctx, f"dir{d}", f"sub{i % 10}")
            os.makedirs(p, exist_ok=True)
            with open(os.path.join(p, f"f{i:05}"), "wb") as f:
                f.write(os.urandom(12 * 1024))
            n += 1
    lines = []
    for d in range(9):
        lines += [f"FROM scratch AS s{d}", f"COPY dir{d} /d{d}"]
    lines.append("FROM scratch")
    lines += [f"COPY --from=s{d} /d{d} /d{d}" for d in range(9)]
    open(os.path.join(ctx, "Dockerfile"), "w").write("\n".join(lines) + "\n")
def io():
    return dict(l.split(": ") for l in open("/proc/self/io").read().split("\n") if l)
cmd = [img, "--state", state, "build", "-q", "-t", "ten", ctx]
subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
times, rchars = [], []
for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 5):
    before = int(io()["rchar"])
    t = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    times.append(time.monotonic() - t)
    rchars.append(int(io()["rchar"]) - before)
print("times", " ".join(f"{x:.3f}" for x in times))
print(f"median {statistics.median(times):.3f} s, rchar median {statistics.median(rchars)} bytes")
