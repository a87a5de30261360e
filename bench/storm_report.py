"""The boot storm's figures (bench/storm.py): per stage, the time until every node is through
and each node's latency; the physical bound of a 10 GbE server; the table printed.
"""

from __future__ import annotations

import re
import statistics

from storm_cluster import stages as stages_of


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summarise(nodes: dict, boot: str, count: int, until: str = "reads") -> dict:
    stages = {}
    for stage in stages_of(boot, until):
        ends = [n["ends"][stage] for n in nodes["nodes"] if stage in n["ends"]]
        latencies = [n["latency"][stage] for n in nodes["nodes"] if stage in n["latency"]]
        failed = sum(1 for n in nodes["nodes"] if n.get("failed_at") == stage)
        stages[stage] = {
            "through": len(ends),
            "all_through_s": round(max(ends), 2) if len(ends) == count else None,
            "last_s": round(max(ends), 2) if ends else None,
            "median_s": round(statistics.median(latencies), 3) if latencies else None,
            "p95_s": round(percentile(latencies, 0.95), 3) if latencies else None,
            "p99_s": round(percentile(latencies, 0.99), 3) if latencies else None,
            "max_s": round(max(latencies), 3) if latencies else None,
            "failed": failed,
            "retries": sum(n["retries"].get(stage, 0) for n in nodes["nodes"]),
        }
        if stage.startswith("dhcp"):  # through, but after a real ROM would have given up
            stages[stage]["past_rom"] = sum(1 for n in nodes["nodes"] if n["past_rom"].get(stage))
    errors: dict[str, int] = {}
    failures = []  # each failed node's own error, with its figures (the grouping hides them)
    for number, n in enumerate(nodes["nodes"], 1):
        if n.get("error"):
            key = re.sub(r"\d+", "N", n["error"])[:160]
            errors[key] = errors.get(key, 0) + 1
            failures.append({"node": number, "stage": n["failed_at"], "error": n["error"]})
    return {
        "nodes": count,
        "failed_nodes": sum(1 for n in nodes["nodes"] if n.get("failed_at")),
        "stages": stages,
        "bytes_per_node": nodes["bytes_per_node"],
        "errors": errors,
        "failures": failures,
        "client_cpu_s": nodes["client_cpu_s"],
        "client_processes": nodes["client_processes"],
        "foreign_export": nodes["foreign_export"],
        "nfs_connections": nodes["nfs_connections"],
    }


GBE10 = 10e9 / 8  # bytes per second


def physical_bound(result: dict) -> float:
    """Seconds a 10 GbE link needs for the bytes of all nodes (DHCP's few hundred bytes
    aside): loader, kernel and initrd, boot reads."""
    per_node = sum(result["bytes_per_node"].values())
    return per_node * result["nodes"] / GBE10


def each_process(workers: list[dict]) -> str:
    return ", ".join(f"{w.get('cpu_s')} ({w.get('loop_lag_max_s')})" for w in workers)


def simulator_line(processes: dict) -> str:
    """The simulator's processes: CPU seconds each, and each one's loop's worst lateness in
    seconds, which shows a client process that could not keep up."""
    nodes = processes["nodes"]
    return (
        f"simulator CPU s (loop lag max s): nodes {nodes['cpu_s']} ({nodes['loop_lag_max_s']}),"
        f" DHCP [{each_process(processes['dhcp'])}],"
        f" C clients [{each_process(processes['tftp_nfs'])}],"
        f" HTTP workers [{each_process(processes['http'])}]"
    )


def print_table(results: list[dict]) -> None:
    for result in results:
        head = f"{result['dhcp']:8} {result['boot']:5} {result['nodes']:6} nodes"
        print(
            f"{head}: failed {result['failed_nodes']}, daemons kept running "
            f"{result['daemons_kept_running']}, 10 GbE bound {physical_bound(result):.1f} s"
        )
        for stage, figures in result["stages"].items():
            print(
                f"    {stage:7} all through {figures['all_through_s']} s  median "
                f"{figures['median_s']}  p95 {figures['p95_s']}  p99 {figures['p99_s']}  max "
                f"{figures['max_s']}  failed {figures['failed']}  retries {figures['retries']}"
                + (f"  past the ROM's tries {figures['past_rom']}" if "past_rom" in figures else "")
            )
        print(f"    daemon CPU s {result['daemon_cpu_s']}  peak MB {result['daemon_peak_mb']}")
        print(f"    client CPU s {result['client_cpu_s']}  kernel drops {result['kernel_drops']}")
        print(f"    {simulator_line(result['client_processes'])}")
        print(f"    server rmem_default {result['receive_buffer']}")
        print(f"    daemons listening after (s) {result['daemon_start_s']}")
        print(f"    node 2 mounting node 1's export: {result['foreign_export']}")
        print(f"    NFS connections open at the end: {result['nfs_connections']}")
        if result["errors"]:
            print(f"    errors {result['errors']}")
