#!/usr/bin/env python3
"""How a build scales with the size of its context: `FROM scratch` + `COPY . /ctx` of 1 KB
files, tagged (`-t`), for each file count given.

Usage: context-scaling.py IMG [RUNS] [WORKDIR] [COUNTS...]
  IMG      the img binary (a release build)
  RUNS     cached runs per count (default 3)
  WORKDIR  where contexts and state directories go (default target/context-scaling)
  COUNTS   file counts (default 2000 20000 200000)

For each count: one cold build (fresh state directory), then RUNS cached builds. Prints wall
time and peak RSS (GNU time's %M) of each, and the medians of the cached runs.
"""
import os, shutil, statistics, subprocess, sys

img = os.path.abspath(sys.argv[1])
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
root = os.path.abspath(sys.argv[3] if len(sys.argv) > 3 else "target/context-scaling")
counts = [int(c) for c in sys.argv[4:]] or [2000, 20000, 200000]


def context(count):
    """A context of `count` 1 KB files, 1,000 to a directory, and its Dockerfile."""
    ctx = os.path.join(root, f"ctx-{count}")
    if os.path.exists(os.path.join(ctx, "Dockerfile")):
        return ctx
    shutil.rmtree(ctx, ignore_errors=True)
    for i in range(count):
        d = os.path.join(ctx, f"d{i // 1000:04}")
        if i % 1000 == 0:
            os.makedirs(d)
        with open(os.path.join(d, f"f{i:06}"), "wb") as f:
            f.write(os.urandom(1024))
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM scratch\nCOPY . /ctx\n")
    return ctx


def build(state, ctx):
    """Wall seconds and peak RSS (KiB) of one `img build -t`."""
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M", img, "--state", state, "build", "-q", "-t",
         "scaling", ctx],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall, rss = out.stderr.strip().splitlines()[-1].split()
    return float(wall), int(rss)


print("| files | cold | cold peak RSS | cached (median) | cached peak RSS (median) |")
print("| --- | --- | --- | --- | --- |")
for count in counts:
    ctx = context(count)
    state = os.path.join(root, f"state-{count}")
    shutil.rmtree(state, ignore_errors=True)
    cold, cold_rss = build(state, ctx)
    cached = [build(state, ctx) for _ in range(runs)]
    walls = [w for w, _ in cached]
    rsss = [r for _, r in cached]
    print(f"| {count:,} | {cold:.2f} s | {cold_rss / 1024:.0f} MB | "
          f"{statistics.median(walls):.2f} s ({', '.join(f'{w:.2f}' for w in walls)}) | "
          f"{statistics.median(rsss) / 1024:.0f} MB |", flush=True)
    shutil.rmtree(state, ignore_errors=True)
