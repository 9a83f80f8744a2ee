"""Run the benchmark: each contender in its own process, per input size; print and save a table.

    python -m bench.run --sizes 2048,8192,16384 [--contenders all|ours,floor,naive,windowed,riocalc]

Results are merged into bench/work/results.json (keyed by size and contender, so one row can be
re-run alone) and the whole table is printed as Markdown. Inputs come from `bench.generate`
(cached in bench/work/inputs) and are read once into the page cache before each size, so every
contender reads a warm file. Outputs of each contender are deleted after it is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from bench.generate import WORK, generate
from bench.measure import run_measured

ROOT = Path(__file__).resolve().parent.parent
CONTENDERS = ("floor", "ours", "distributed", "job", "seeds", "naive", "windowed", "riocalc")
GDAL_CACHEMAX_MB = "64"  # the code location's default (pipeline.core.cog.default_gdal_cache)


def _riocalc_expression() -> str:
    """The 6 indices as one 6-band output of `rio calc` (one decode of the input)."""
    b = {n: f"(* 0.0001 (read 1 {i} 'float32'))"
         for i, n in enumerate(("blue", "green", "red", "red_edge", "nir"), start=1)}
    nd = lambda p, q: f"(/ (- {b[p]} {b[q]}) (+ {b[p]} {b[q]}))"  # noqa: E731
    savi = f"(/ (* 1.5 (- {b['nir']} {b['red']})) (+ {b['nir']} {b['red']} 0.5))"
    evi = (f"(/ (* 2.5 (- {b['nir']} {b['red']})) "
           f"(+ {b['nir']} (* 6.0 {b['red']}) (* -7.5 {b['blue']}) 1.0))")
    vari = f"(/ (- {b['green']} {b['red']}) (- (+ {b['green']} {b['red']}) {b['blue']}))"
    return f"(asarray {nd('nir', 'red')} {nd('nir', 'red_edge')} {nd('nir', 'green')} " \
           f"{savi} {evi} {vari})"


def command(contender: str, src: Path, out: Path) -> list[str]:
    py = sys.executable
    if contender == "riocalc":
        rio = str(Path(py).with_name("rio"))
        return [rio, "calc", _riocalc_expression(), str(src), str(out / "indices.tif"),
                "--dtype", "float32", "--overwrite",
                "--co", "nodata=nan", "--co", "compress=DEFLATE", "--co", "predictor=3",
                "--co", "tiled=YES", "--co", "blockxsize=512", "--co", "blockysize=512",
                "--co", "interleave=band", "--co", "bigtiff=IF_SAFER"]
    return [py, "-m", f"bench.contenders.{contender}", "--input", str(src), "--out", str(out)]


def _load() -> float:
    return os.getloadavg()[0]


def _warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def table(results: dict) -> str:
    rows = ["| size | contender | s (work) | s (process) | MP/s | peak RSS MB | floor s / s "
            "| load 1-min before |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key in sorted(results, key=lambda k: (int(k.split(":")[0]),
                                              CONTENDERS.index(k.split(":")[1]))):
        r = results[key]
        size, contender = key.split(":")
        floor = results.get(f"{size}:floor")
        ratio = f"{floor['work_s'] / r['work_s']:.2f}" if floor and r["ok"] else "–"
        mp = int(size) ** 2 / 1e6
        rows.append(f"| {size}² | {contender} | {r['work_s']:.1f} | {r['wall_s']:.1f} | "
                    f"{mp / r['work_s']:.1f} | {r['peak_rss_mb']:.0f} | {ratio} | "
                    f"{r['load_before']:.2f} |" + ("" if r["ok"] else " FAILED"))
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description="analysis benchmark")
    parser.add_argument("--sizes", default="2048,8192,16384")
    parser.add_argument("--contenders", default="all")
    parser.add_argument("--interleave", choices=("pixel", "band"), default="pixel")
    parser.add_argument("--results", type=Path, default=WORK / "results.json")
    parser.add_argument("--keep-outputs", action="store_true")
    args = parser.parse_args()
    chosen = CONTENDERS if args.contenders == "all" else tuple(args.contenders.split(","))
    unknown = set(chosen) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contender(s) {sorted(unknown)}; choose from {CONTENDERS}")
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    env = {**os.environ, "GDAL_CACHEMAX": GDAL_CACHEMAX_MB, "PYTHONPATH": str(ROOT)}
    for size in (int(s) for s in args.sizes.split(",")):
        src = generate(size, interleave=args.interleave)
        _warm(src)
        for contender in chosen:
            out = WORK / "out" / str(size) / contender
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            os.sync()  # the previous contender's outputs are written back before this one starts
            time.sleep(2)
            load = _load()
            m = run_measured(command(contender, src, out), env=env, cwd=ROOT,
                             log=WORK / "out" / f"{size}_{contender}.log")
            ok = m.returncode == 0
            work = m.report.get("work_s", m.wall_s)  # rio calc: whole process
            key = f"{size}{'' if args.interleave == 'pixel' else 'b'}:{contender}"
            results[key] = {"work_s": work, "wall_s": m.wall_s, "peak_rss_mb": m.peak_rss_mb,
                            "sampled_peak_mb": m.sampled_peak_mb, "maxrss_mb": m.maxrss_mb,
                            "phases": m.report.get("phases", {}), "ok": ok,
                            "load_before": load, "load_after": _load(),
                            "files": len(list(out.iterdir())),
                            "when": time.strftime("%Y-%m-%d %H:%M:%S")}
            print(f"{size}² {contender}: {'ok' if ok else 'FAILED'} work {work:.1f} s, process "
                  f"{m.wall_s:.1f} s, peak RSS {m.peak_rss_mb:.0f} MB (sampled tree "
                  f"{m.sampled_peak_mb:.0f}, maxrss {m.maxrss_mb:.0f}), "
                  f"{results[key]['files']} files, phases {results[key]['phases']}", flush=True)
            if not ok:
                print(m.output_tail, flush=True)
            if not args.keep_outputs:
                shutil.rmtree(out, ignore_errors=True)
            args.results.parent.mkdir(parents=True, exist_ok=True)
            args.results.write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
