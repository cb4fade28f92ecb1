"""``consultd-bench SCENARIO (--url URL | --spawn) [...]`` (contract: shared/BENCH.md)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from bench import report
from bench.client import ApiError
from bench.pool import WorkerError, own_cpu_s
from bench.progress import Progress
from bench.scenario import RunContext, Scenario
from bench.scenarios import load, load_all
from bench.spawn import ServerProbe, SpawnedServer, attach, check_loopback, raise_nofile_limit

SERVER_READY_TIMEOUT_S = 60.0


def _add_common(parser: argparse.ArgumentParser, scenario: Scenario) -> None:
    d = scenario.DEFAULTS
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a running server on loopback, e.g. http://127.0.0.1:8080")
    target.add_argument(
        "--spawn", action="store_true",
        help="start a server on a free loopback port with a fresh data dir, stop it at the end",
    )  # fmt: skip
    parser.add_argument(
        "--rooms", type=int, default=d.rooms, metavar="R", help="rooms (default %(default)s)"
    )
    parser.add_argument(
        "--participants",
        type=int,
        default=d.participants,
        metavar="M",
        help="participants per room (default %(default)s)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=d.rate,
        metavar="HZ",
        help="total event rate across all participants (default %(default)s)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=d.duration,
        metavar="SECONDS",
        help="length of the measured phase (default %(default)s)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the report object to FILE")
    parser.add_argument(
        "--plot", metavar="FILE.png", help="draw latency over time and its distribution"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="consultd-bench",
        description="Load harness of consultd: drives a server on loopback and reports "
        "latency, throughput, errors, server CPU and memory.",
    )
    subs = parser.add_subparsers(dest="scenario", metavar="SCENARIO", required=True,
                                 title="scenarios")  # fmt: skip
    for scenario in load_all():
        sub = subs.add_parser(
            scenario.NAME, help=scenario.SUMMARY, description=scenario.SUMMARY,
        )  # fmt: skip
        _add_common(sub, scenario)
        own = sub.add_argument_group(f"{scenario.NAME} options")
        scenario.add_arguments(own)
    return parser


async def _run(scenario: Scenario, args: argparse.Namespace) -> int:
    progress = Progress(args.quiet)
    server: SpawnedServer | None = None
    probe: ServerProbe | None = None
    if args.spawn:
        # a scenario may need server settings (media: ICE on loopback); the user's env wins
        server_env = getattr(scenario, "server_env", None)
        for key, value in (server_env(args) if server_env is not None else {}).items():
            os.environ.setdefault(key, value)
        server = SpawnedServer()
        server.start()
        probe = server.probe
        url = server.url
    else:
        url = check_loopback(args.url)
        probe = attach(url)
        if probe is not None:
            probe.start()
    try:
        if server is not None:
            progress.note(f"consultd-bench: server starting on {url}")
            await server.wait_ready(SERVER_READY_TIMEOUT_S)
        ctx = RunContext(
            url=url,
            args=args,
            progress=progress,
            probe=probe,
            data_dir=server.data_dir if server is not None else None,
        )
        result = await asyncio.wait_for(scenario.run(ctx), scenario.time_budget_s(args))
        if server is not None and server.proc is not None and server.proc.poll() is not None:
            code = server.proc.returncode
            print(
                f"consultd-bench: the server exited during the run (code {code}):\n"
                + server.log_tail(),
                file=sys.stderr,
            )
    except BaseException:
        if server is not None:
            tail = server.log_tail(15)
            if tail:
                print(f"consultd-bench: server log (last lines):\n{tail}", file=sys.stderr)
        raise
    finally:
        progress.close()
        if server is not None:
            server.stop()
        elif probe is not None:
            probe.finish()
    figures = probe.figures() if probe is not None else None
    out = report.build(scenario.NAME, args, result, figures, own_cpu_s() + result.worker_cpu_s)
    if server is not None:
        out["extra"]["server_stop_s"] = round(server.stop_s or 0.0, 2)
        if server.killed:
            print("consultd-bench: the server ignored SIGTERM and was killed", file=sys.stderr)
    print(report.summary(out, result))
    if args.json:
        report.write_json(out, args.json)
    if args.plot:
        report.plot(result, args.plot, f"consultd-bench {scenario.NAME}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    scenario = load(args.scenario)
    raise_nofile_limit()
    try:
        return asyncio.run(_run(scenario, args))
    except KeyboardInterrupt:
        print("consultd-bench: interrupted", file=sys.stderr)
        return 130
    except TimeoutError:
        print("consultd-bench: error: the run exceeded its time budget", file=sys.stderr)
        return 1
    except (ApiError, WorkerError, RuntimeError, ValueError, OSError) as exc:
        print(f"consultd-bench: error: {exc}", file=sys.stderr)
        return 1
