#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Turns bench-update's BENCH lines into results.csv, table.md and plots.

Usage: report.py RAW_LOG OUT_DIR
"""
import csv
import os
import re
import subprocess
import sys

PHASES = ["suspend", "blob", "exec", "load", "remap", "irq", "first", "commit"]
PHASE_NAMES = {
    "suspend": "vaddr suspend",
    "blob": "blob write",
    "exec": "exec + dynamic loading",
    "load": "blob load",
    "remap": "reclaim + vaddr remap",
    "irq": "IRQ re-attach",
    "first": "first DMA + IRQ",
    "commit": "commit",
}
CRASH_PHASES = ["reap", "restart", "load", "remap", "irq", "first", "commit"]
CRASH_PHASE_NAMES = {
    "reap": "kill → keeper reaps",
    "restart": "keeper fork + exec + loading",
    "load": "blob load",
    "remap": "reclaim + vaddr remap",
    "irq": "IRQ re-attach",
    "first": "first DMA + IRQ",
    "commit": "commit",
}
BASE = {"mem_mib": 64, "mappings": 1, "vectors": 1, "devices": 1}


def parse(path):
    rows = []
    for line in open(path):
        m = re.search(r"BENCH (mode=.*?)(?: \[kernel (.*)\])?$", line.strip())
        if not m:
            continue
        row = {"kernel": m.group(2) or ""}
        for field in m.group(1).split():
            key, value = field.split("=", 1)
            if "/" in value:
                med, lo, hi = (float(x) for x in value.split("/"))
                row[key] = med
                row[key + "_min"] = lo
                row[key + "_max"] = hi
            else:
                row[key] = value if key == "mode" else int(value)
        rows.append(row)
    return rows


def config_key(r):
    return (r["mem_mib"], r["mappings"], r["vectors"], r["devices"])


def ms(us):
    return "%.1f" % (us / 1000.0)


def crash_tables(crash, naive, cprkit, bare_us):
    """The crash restart under the keeper beside the naive restart."""
    order = sorted(crash, key=lambda k: (k[3], k[2], k[1], k[0]))
    lines = ["Crash restart under the keeper (`cpr-exec run --restart-delay 0`): "
             "SIGKILL → first NVMe command (IDENTIFY: 4 KiB DMA + MSI-X) "
             "serviced by the restarted process; *from died* starts at the "
             "keeper's reap of the dead process instead.", "",
             "| DMA memory | mappings | MSI-X vectors | devices | crash "
             "restart (kill → first command) | from died | naive restart | "
             "naive / crash | crash / bare exec | crash / cprkit update |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key in order:
        c, n, u = crash[key], naive.get(key), cprkit.get(key)
        lines.append("| %d MiB | %d | %d | %d | %s (%s–%s) | %s | %s | %s | "
                     "%.1f× | %s |" % (
                         key[0], key[1], key[2], key[3], ms(c["blackout_us"]),
                         ms(c["blackout_us_min"]), ms(c["blackout_us_max"]),
                         ms(c["died_us"]),
                         ms(n["restart_us"]) if n else "–",
                         "%.1f×" % (n["restart_us"] / c["blackout_us"])
                         if n else "–",
                         c["blackout_us"] / bare_us,
                         "%.2f×" % (c["blackout_us"] / u["blackout_us"])
                         if u else "–"))
    lines += ["", "Crash restart phases (medians, ms):", "",
              "| DMA memory | mappings | vectors | devices | " +
              " | ".join(CRASH_PHASE_NAMES[p] for p in CRASH_PHASES) + " |",
              "|---|---|---|---|" + "---|" * len(CRASH_PHASES)]
    for key in order:
        c = crash[key]
        lines.append("| %d MiB | %d | %d | %d | " % key +
                     " | ".join(ms(c[p + "_us"]) for p in CRASH_PHASES) + " |")
    lines.append("")
    return lines


def iommufd_table(iommufd, cprkit, bare_us):
    """type1 and iommufd blackouts of the same configurations, one run."""
    lines = ["type1 and iommufd, same run (blackout median, min–max; "
             "ratios to the bare exec):", "",
             "| DMA memory | mappings | type1 blackout | / bare exec | "
             "iommufd blackout | / bare exec | iommufd load | iommufd "
             "reclaim |",
             "|---|---|---|---|---|---|---|---|"]
    for key in sorted(iommufd, key=lambda k: (k[1], k[0])):
        i, t = iommufd[key], cprkit.get(key)
        lines.append("| %d MiB | %d | %s | %s | %s (%s–%s) | %.2f× | %s | %s |" % (
            key[0], key[1],
            "%s (%s–%s)" % (ms(t["blackout_us"]), ms(t["blackout_us_min"]),
                            ms(t["blackout_us_max"])) if t else "–",
            "%.2f×" % (t["blackout_us"] / bare_us) if t else "–",
            ms(i["blackout_us"]), ms(i["blackout_us_min"]),
            ms(i["blackout_us_max"]), i["blackout_us"] / bare_us,
            ms(i["load_us"]), ms(i["remap_us"])))
    lines.append("")
    return lines


def main():
    raw, out = sys.argv[1], sys.argv[2]
    rows = parse(raw)
    kernel = next((r["kernel"] for r in rows if r["kernel"]), "?")
    cprkit = {config_key(r): r for r in rows if r["mode"] == "cprkit"}
    naive = {config_key(r): r for r in rows if r["mode"] == "naive"}
    crash = {config_key(r): r for r in rows if r["mode"] == "crash"}
    bare = next(r for r in rows if r["mode"] == "bare")
    bare_us = bare["exec_us"]

    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        keys = sorted({k for r in rows for k in r})
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow(r)

    lines = []
    lines.append("Kernel %s, %d runs per configuration, times in ms "
                 "(median, min–max). Bare exec of the same binary: %s ms "
                 "(%s–%s)." % (kernel, bare["runs"], ms(bare_us),
                               ms(bare["exec_us_min"]), ms(bare["exec_us_max"])))
    lines.append("")
    lines.append("| DMA memory | mappings | MSI-X vectors | devices | cprkit "
                 "blackout | naive restart | naive / cprkit | blackout / "
                 "bare exec |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for key in sorted(cprkit, key=lambda k: (k[3], k[2], k[1], k[0])):
        c, n = cprkit[key], naive.get(key)
        lines.append("| %d MiB | %d | %d | %d | %s (%s–%s) | %s | %s | %.1f× |" % (
            key[0], key[1], key[2], key[3], ms(c["blackout_us"]),
            ms(c["blackout_us_min"]), ms(c["blackout_us_max"]),
            ms(n["restart_us"]) if n else "–",
            "%.1f×" % (n["restart_us"] / c["blackout_us"]) if n else "–",
            c["blackout_us"] / bare_us))
    lines.append("")
    mems = sorted(k for k in cprkit if k[1:] == (1, 1, 1))
    if len(mems) >= 2:
        small, large = cprkit[mems[0]], cprkit[mems[-1]]
        lines.append("Blackout at %d MiB / at %d MiB of DMA-mapped memory: "
                     "**%.2f**." % (mems[-1][0], mems[0][0],
                                    large["blackout_us"] / small["blackout_us"]))
        lines.append("")
    rollback = next((r for r in rows if r["mode"] == "rollback"), None)
    if rollback:
        base = cprkit.get((64, 1, 1, 1))
        lines.append(
            "A refused update (the new binary rolls back right after its "
            "load; the old one reclaims, serves and commits), base "
            "configuration: suspend → old binary's first command %s ms "
            "(%s–%s): suspend → rollback exec %s, rollback exec → first "
            "command %s; %.1f× a bare exec%s." % (
                ms(rollback["blackout_us"]), ms(rollback["blackout_us_min"]),
                ms(rollback["blackout_us_max"]),
                ms(rollback["to_rollback_us"]), ms(rollback["back_us"]),
                rollback["blackout_us"] / bare_us,
                ", %.1f× the committed update" % (
                    rollback["blackout_us"] / base["blackout_us"])
                if base else ""))
        lines.append("")
    if crash:
        lines.extend(crash_tables(crash, naive, cprkit, bare_us))
    iommufd = {config_key(r): r for r in rows if r["mode"] == "iommufd"}
    if iommufd:
        lines.extend(iommufd_table(iommufd, cprkit, bare_us))
    lines.append("Phase breakdown (medians, ms):")
    lines.append("")
    lines.append("| DMA memory | mappings | vectors | devices | " +
                 " | ".join(PHASE_NAMES[p] for p in PHASES) + " |")
    lines.append("|---|---|---|---|" + "---|" * len(PHASES))
    for key in sorted(cprkit, key=lambda k: (k[3], k[2], k[1], k[0])):
        c = cprkit[key]
        lines.append("| %d MiB | %d | %d | %d | " % key +
                     " | ".join(ms(c[p + "_us"]) for p in PHASES) + " |")
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))

    # One data file per sweep axis: x, cprkit median/min/max, naive median.
    axes = {"mem_mib": "DMA-mapped memory (MiB)", "mappings": "DMA mappings",
            "vectors": "NVMe MSI-X vectors", "devices": "devices"}
    for i, (axis, label) in enumerate(axes.items()):
        pts = [k for k in cprkit
               if all(k[j] == BASE[a] for j, a in enumerate(axes) if a != axis)]
        pts.sort(key=lambda k: k[i])
        data = os.path.join(out, "sweep-%s.dat" % axis)
        with open(data, "w") as f:
            for k in pts:
                c, n, x = cprkit[k], naive.get(k), crash.get(k)
                io = iommufd.get(k)
                f.write("%d %f %f %f %f %f %f\n" % (
                    k[i], c["blackout_us"] / 1000, c["blackout_us_min"] / 1000,
                    c["blackout_us_max"] / 1000,
                    n["restart_us"] / 1000 if n else float("nan"),
                    x["blackout_us"] / 1000 if x else float("nan"),
                    io["blackout_us"] / 1000 if io else float("nan")))
        logx = "set logscale x 2" if axis in ("mem_mib", "mappings", "vectors") else ""
        script = """
set terminal pngcairo size 720,420 font ",10"
set output '{png}'
set title 'Blackout vs {label} (kernel {kernel}, TCG guest)'
set xlabel '{label}'
set ylabel 'ms'
set logscale y
{logx}
set key top left
set grid
plot '{data}' using 1:2:3:4 with yerrorlines title 'cprkit blackout (median, min-max)', \\
     '{data}' using 1:5 with linespoints title 'naive restart', \\
     '{data}' using 1:6 with linespoints title 'crash restart (keeper)', \\
     '{data}' using 1:7 with linespoints title 'iommufd blackout', \\
     {bare} with lines dashtype 2 title 'bare exec'
""".format(png=os.path.join(out, "sweep-%s.png" % axis), label=label,
           kernel=kernel, data=data, logx=logx, bare=bare_us / 1000)
        subprocess.run(["gnuplot"], input=script.encode(), check=True)

    # Stacked phases for the base configuration sweep over memory.
    data = os.path.join(out, "phases.dat")
    with open(data, "w") as f:
        f.write("config " + " ".join(PHASES) + "\n")
        for key in sorted(cprkit, key=lambda k: (k[3], k[2], k[1], k[0])):
            c = cprkit[key]
            f.write('"%dM/%dm/%dv/%dd" ' % key +
                    " ".join("%f" % (c[p + "_us"] / 1000) for p in PHASES) + "\n")
    script = """
set terminal pngcairo size 900,460 font ",9"
set output '{png}'
set title 'Blackout phases (median, kernel {kernel}, TCG guest): memory/mappings/vectors/devices'
set style data histograms
set style histogram rowstacked
set style fill solid 0.8 border -1
set boxwidth 0.7
set ylabel 'ms'
set xtics rotate by -30
set key outside right
plot for [i=2:{n}] '{data}' using i:xtic(1) title columnheader(i)
""".format(png=os.path.join(out, "phases.png"), kernel=kernel, data=data,
           n=len(PHASES) + 1)
    subprocess.run(["gnuplot"], input=script.encode(), check=True)


if __name__ == "__main__":
    main()
