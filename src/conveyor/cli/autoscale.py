"""``conveyor autoscale``: set, show or turn off an environment's autoscaling (thin over
``/apps/{app}/autoscale``)."""

from __future__ import annotations


from typing import Annotated, Any

import typer
from rich.markup import escape

from conveyor.cli import output as o
from conveyor.cli.client import Api, CliError, ExitCode
from conveyor.cli.main import JsonOpt, run  # registered from main, after it is loaded

UNITS = {"inflight": "in flight/instance", "rps": "req/s/instance", "p95": "ms p95"}


def _duration(text: str | None, flag: str) -> float | None:
    if text is None:
        return None
    from conveyor.domain.manifest import parse_duration

    try:
        return float(parse_duration(text))
    except ValueError as exc:
        raise CliError(f"{flag}: {exc}", ExitCode.USAGE) from None


def _show(view: dict[str, Any]) -> None:
    if not view["autoscalers"]:
        o.out.print(f"{view['app']}/{view['env']} is not autoscaled. Turn it on with "
                    f"`conveyor autoscale {view['app']} --min 2 --max 10 --target-inflight 8`.")
        return
    o.out.print(f"[bold]Autoscaling of {view['app']}/{view['env']}[/bold]")
    for a in view["autoscalers"]:
        p, d = a["policy"], a.get("decision") or {}
        count = a.get("count") if a.get("count") is not None else "?"
        o.out.print(f"  {a['process']}: {count} instance(s), {d.get('ready', '?')} ready; bounds {p['min']}..{p['max']}, "
                    f"target {p['target']:g} {UNITS[p['metric']]}")
        if d:
            o.out.print(f"    desired {d['desired']} ({o.ago(a.get('decided_at'))}): {escape(d['reason'])}")
        else:
            o.out.print("    no decision yet: it decides once an instance is ready")


def autoscale(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    env: Annotated[str, typer.Option("--env", "-e", help="The environment.")] = "production",
    process: Annotated[str, typer.Option("--process", "-p", help="The process type to scale.")] = "web",
    min_: Annotated[int | None, typer.Option("--min", help="Fewest instances.")] = None,
    max_: Annotated[int | None, typer.Option("--max", help="Most instances.")] = None,
    target_inflight: Annotated[float | None, typer.Option("--target-inflight", help="Target requests in flight per instance.")] = None,
    target_rps: Annotated[float | None, typer.Option("--target-rps", help="Target requests/s per instance.")] = None,
    target_p95: Annotated[float | None, typer.Option("--target-p95", help="Target p95 latency, in ms (Heroku's).")] = None,
    tolerance: Annotated[float, typer.Option("--tolerance", help="No change within ±this fraction of the target.")] = 0.1,
    window: Annotated[str, typer.Option("--window", help="Metrics each decision reads, e.g. 10s.")] = "10s",
    up_step: Annotated[int, typer.Option("--up-step", help="Scale up by at most max(this, --up-percent) a step.")] = 4,
    up_percent: Annotated[float, typer.Option("--up-percent", help="... or this % of the current count.")] = 100.0,
    up_period: Annotated[str, typer.Option("--up-period", help="Time between two scale-ups.")] = "5s",
    down_window: Annotated[str, typer.Option("--down-window", help="Stabilisation window before scaling down (HPA: 5m).")] = "60s",
    down_step: Annotated[int, typer.Option("--down-step", help="Scale down by at most this many a step.")] = 1,
    down_period: Annotated[str, typer.Option("--down-period", help="Time between two scale-downs.")] = "10s",
    period: Annotated[str, typer.Option("--period", help="Time between two decisions (HPA's sync loop: 15s).")] = "1s",
    up_sigma: Annotated[float, typer.Option(
        "--up-sigma", help="Scale up on a rate only when it is above the band by more than this many standard "
                           "deviations of the window's request count (noise at a few requests/s; 0: HPA's rule).")] = 2.0,
    up_window: Annotated[str, typer.Option(
        "--up-window", help="A scale-up also reads this last part of the window when it shows more load "
                            "(a step is seen whole at once; 0s: the window only, HPA's rule).")] = "5s",
    off: Annotated[bool, typer.Option("--off", help="Turn autoscaling off (the count stays where it is).")] = False,
    json: JsonOpt = False,
) -> None:
    """Scale a process type with its load, in small steps (Kubernetes HPA's algorithm).

    With no bounds or target: shows the count, what the autoscaler wants and why ("3 → 5: 14.2 in flight per instance vs target 8"). Give --min, --max and one target to turn it on or change it, e.g. `conveyor autoscale hello --min 2 --max 20 --target-inflight 8`.

    desired = ceil(ready × metric / target), unchanged within ±tolerance; up at once by at most max(--up-step, --up-percent) per --up-period; down only after --down-window of lower load, by --down-step per --down-period. New instances count once ready; removed ones drain first. `conveyor scale` of an autoscaled process is refused (change --min/--max instead).
    """
    targets = {k: v for k, v in (("inflight", target_inflight), ("rps", target_rps), ("p95", target_p95)) if v is not None}

    def body() -> None:
        with Api() as api:
            if off:
                view = api.request("DELETE", f"/apps/{app_name}/autoscale", params={"env": env, "process": process})
            elif min_ is None and max_ is None and not targets:
                view = api.get(f"/apps/{app_name}/autoscale", params={"env": env})
            else:
                if min_ is None or max_ is None or len(targets) != 1:
                    raise CliError("give --min, --max and one target (--target-inflight, --target-rps or --target-p95)",
                                   ExitCode.USAGE)
                [(metric, target)] = targets.items()
                view = api.request("PUT", f"/apps/{app_name}/autoscale", json={
                    "env": env, "process": process, "min": min_, "max": max_, "metric": metric, "target": target,
                    "tolerance": tolerance, "window": _duration(window, "--window"), "up_step": up_step,
                    "up_percent": up_percent, "up_period": _duration(up_period, "--up-period"),
                    "down_window": _duration(down_window, "--down-window"), "down_step": down_step,
                    "down_period": _duration(down_period, "--down-period"), "period": _duration(period, "--period"),
                    "up_sigma": up_sigma, "up_window": _duration(up_window, "--up-window")})
        if json:
            o.emit_json(view)
        else:
            _show(view)

    run(body)


def register(app: typer.Typer) -> None:
    app.command()(autoscale)

