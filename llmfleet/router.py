"""The fleet's router as a plan: which servers it routes to, its unit, env file and release.

One endpoint for a fleet: a router host (``router: true``) runs smg, the
maintained successor of sglang-router (``files/routers/smg.yaml`` says which
pin and which flags, README "Router" says why), as ``llmfleet-router.service``.
Everything it runs is decided here from the inventory before any host is
touched, like a serve plan:

- the worker list is every serving host that plans cleanly, and of a
  multi-node ``serve_group`` only its rank 0 (the other ranks serve no HTTP);
- the policy is ``router_policy`` or the router file's default (cache-aware);
- the endpoint key (``api_key``/``api_key_file`` on the router host) goes into
  the 0600 env file only, and the launcher hands it to smg in-process, never
  in argv; smg sends the same key to every server, so servers with a key of
  their own must share the router's (``check_keys``);
- the release id is a hash of the unit and env file, as for servers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import yaml

from . import hostpaths as hp
from .errors import LlmfleetError, Problem
from .paths import files_dir
from .settings import Settings
from .unitfile import env_quote, jinja_env, systemd_quote

ROUTER_FILE_KEYS = {"id", "package", "policies", "default_policy", "args"}
# the variable files/scripts/llmfleet-router.py reads the endpoint key from (a test checks)
KEY_ENV = "LLMFLEET_ROUTER_API_KEY"


@dataclass(frozen=True)
class RouterSpec:
    """``files/routers/<id>.yaml``: the router package, its policies and fixed flags."""

    id: str
    package: str
    policies: tuple[str, ...]
    default_policy: str
    args: dict[str, Any]

    @property
    def venv(self) -> str:
        """Its own venv, named by the pin: a new pin builds beside the old one."""
        digest = hashlib.sha256(self.package.encode()).hexdigest()[:10]
        return f"{hp.TOOLS_DIR}/{self.id}-{digest}"


@lru_cache(maxsize=4)
def load_spec(name: str = "smg") -> RouterSpec:
    """The router file, checked: a missing or unknown key names the file."""
    path = files_dir() / "routers" / f"{name}.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise LlmfleetError(f"router file {path}: {exc}") from exc
    keys = set(data or {})
    if keys != ROUTER_FILE_KEYS:
        raise LlmfleetError(
            f"router file {path}: missing {sorted(ROUTER_FILE_KEYS - keys)}, "
            f"unknown {sorted(keys - ROUTER_FILE_KEYS)}"
        )
    if data["default_policy"] not in data["policies"]:
        raise LlmfleetError(f"router file {path}: default_policy is not one of its policies")
    return RouterSpec(
        id=str(data["id"]),
        package=str(data["package"]),
        policies=tuple(data["policies"]),
        default_policy=str(data["default_policy"]),
        args=dict(data["args"] or {}),
    )


@dataclass(frozen=True)
class Worker:
    """One server behind the router: the inventory host and the URL the router uses."""

    host: str
    url: str
    group: str | None = None  # its serve_group, when it is a multi-node server's rank 0

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "url": self.url, "group": self.group}


def url_of(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address and not address.startswith("[") else address
    return f"http://{host}:{int(port)}"


def router_workers(plans: list[Any]) -> tuple[list[Worker], list[Problem]]:
    """The servers a router routes to, from the fleet's host plans (``validate.HostPlan``
    after ``check_fleet``): hosts that serve and plan cleanly, a serving group's rank 0
    only.  A serving host left out is a warning that names it and why."""
    out: list[Worker] = []
    left: list[Problem] = []
    for p in plans:
        if not p.settings.recipe:
            continue  # a router-only (or onboarding-only) host serves nothing
        if not p.ok or p.rendered is None:
            left.append(
                Problem(
                    p.host,
                    "recipe",
                    "left out of the router: its plan fails",
                    fix="fix its plan (llmfleet plan), then deploy the router again",
                    severity="warning",
                )
            )
            continue
        if p.group is not None and p.group.head.host != p.host:
            continue  # a worker rank: its group is served by rank 0
        group = p.group.name if p.group is not None else None
        out.append(Worker(p.host, url_of(p.address, p.rendered.port), group))
    return out, left


def check_keys(router: str, key: str | None, worker_keys: dict[str, str | None]) -> list[Problem]:
    """smg sends one key to every server: each server's key must be none or the router's."""
    problems = []
    for host, wkey in worker_keys.items():
        if wkey is None or wkey == key:
            continue
        why = "has an endpoint key and the router none" if key is None else "has another key"
        problems.append(
            Problem(
                router,
                "api_key_file",
                f"{host} {why}: the router sends one key to every server",
                fix=f"give the router and the servers the same api_key_file (or none on {host})",
            )
        )
    return problems


@dataclass(frozen=True)
class RouterPlan:
    """Everything the router deploy applies on one router host."""

    host: str
    spec: RouterSpec
    port: int
    metrics_port: int
    policy: str
    health_interval: int
    workers: tuple[Worker, ...]
    argv: tuple[str, ...]
    unit: str
    env: str
    release: str
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def release_dir(self) -> str:
        return f"{hp.ROUTER_RELEASES}/{self.release}"


def router_argv(
    spec: RouterSpec, s: Settings, policy: str, workers: list[Worker] | tuple[Worker, ...]
) -> list[str]:
    """The launcher's argv: smg's own flags, never the key."""
    argv = [
        f"{spec.venv}/bin/python",
        hp.ROUTER_LAUNCHER,
        "--host",
        "0.0.0.0",
        "--port",
        str(s.router_port),
        "--prometheus-port",
        str(s.router_metrics_port),
        "--policy",
        policy,
        "--health-check-interval-secs",
        str(s.router_health_interval),
    ]
    for flag, value in spec.args.items():
        if value is True:
            argv.append(flag)
        elif value is not False and value is not None:
            argv += [flag, str(value)]
    return [*argv, "--worker-urls", *(w.url for w in workers)]


def router_plan(
    host: str,
    s: Settings,
    workers: list[Worker],
    key: str | None,
    spec: RouterSpec | None = None,
) -> RouterPlan:
    """The router host's plan; an error names the host, the setting and a fix."""
    spec = spec or load_spec()
    policy = s.router_policy or spec.default_policy
    if policy not in spec.policies:
        raise LlmfleetError(
            f"{host}: router_policy: {policy!r} is not a {spec.id} policy "
            f"(fix: one of {', '.join(spec.policies)})"
        )
    if not workers:
        raise LlmfleetError(
            f"{host}: router: no serving host in the inventory to route to "
            "(fix: give the servers a recipe, or drop router from this host)"
        )
    if s.router_port == s.router_metrics_port:
        raise LlmfleetError(
            f"{host}: router_metrics_port: {s.router_metrics_port} is the endpoint's port too "
            "(fix: give the metrics another port)"
        )
    argv = router_argv(spec, s, policy, workers)
    unit = (
        jinja_env()
        .get_template("llmfleet-router.service.j2")
        .render(
            router=spec.id,
            package=spec.package,
            user=hp.ROUTER_USER,
            home=hp.ROUTER_HOME,
            env_file=hp.ROUTER_ENV,
            exec_start=" ".join(systemd_quote(a) for a in argv),
        )
    )
    env = "# Managed by llmfleet (deploys/router.py)\n"
    if key:
        env += f"{KEY_ENV}={env_quote(key)}\n"
    release = hashlib.sha256((unit + "\0" + env).encode()).hexdigest()[:12]
    manifest = {
        "release": release,
        "router": spec.id,
        "package": spec.package,
        "venv": spec.venv,
        "policy": policy,
        "port": s.router_port,
        "metrics_port": s.router_metrics_port,
        "health_interval": s.router_health_interval,
        "workers": [w.to_json() for w in workers],
        "argv": argv,
        "api_key_env": KEY_ENV if key else None,
    }
    return RouterPlan(
        host=host,
        spec=spec,
        port=s.router_port,
        metrics_port=s.router_metrics_port,
        policy=policy,
        health_interval=s.router_health_interval,
        workers=tuple(workers),
        argv=tuple(argv),
        unit=unit,
        env=env,
        release=release,
        manifest=manifest,
    )


def manifest_text(plan: RouterPlan) -> str:
    return json.dumps(plan.manifest, indent=2, sort_keys=True) + "\n"


# --- the fleet's routers, as the control node sees them (rollout, rollback, status)


def router_key(host: str, s: Settings) -> str | None:
    """The router's endpoint key on the control node, as servers get theirs."""
    from .apikeys import api_key_for

    return api_key_for(host, s, {"id": "router", "api_key_env": KEY_ENV})


def fleet_plans(hosts: list[tuple[str, dict[str, Any]]], catalog: Any = None) -> list[Any]:
    """Every inventory host planned, fleet checks included (serve groups, ports)."""
    from .catalog import load
    from .validate import check_fleet, plan_host

    cat = catalog or load()
    plans = [plan_host(cat, n, d, str(d.get("ssh_hostname") or n)) for n, d in hosts]
    check_fleet(plans, cat)
    return plans


def admins(plans: list[Any], http: Any = None) -> list[Any]:
    """A ``drain.RouterAPI`` for every router host of the fleet."""
    from .drain import RouterAPI, requests_http

    return [
        RouterAPI(
            p.host,
            url_of(p.address, p.settings.router_port),
            router_key(p.host, p.settings),
            http or requests_http(),
        )
        for p in plans
        if p.ok and p.settings.router
    ]


def member_urls(plans: list[Any]) -> dict[str, str]:
    """host -> the router worker URL that stands for it: its own, or its serve group's
    rank 0's (restarting any member restarts the group's server)."""
    workers, _ = router_workers(plans)
    by_host = {w.host: w.url for w in workers}
    by_group = {w.group: w.url for w in workers if w.group}
    out = dict(by_host)
    for p in plans:
        if p.group is not None and p.group.name in by_group:
            out[p.host] = by_group[p.group.name]
    return out


def fleet_drain(plans: list[Any], say: Any = print, http: Any = None) -> Any:
    """The rollout's ``drain.BatchDrain`` for this fleet, or None when it has no router."""
    from .drain import BatchDrain, Drainer, requests_http

    routers = admins(plans, http)
    if not routers:
        return None
    http = http or requests_http()
    return BatchDrain(
        Drainer(routers, http=http),
        member_urls(plans),
        say=say,
        timeouts={p.host: float(p.settings.drain_timeout) for p in plans},
    )


def router_view(plans: list[Any], http: Any = None) -> list[dict[str, Any]]:
    """What each router host says about the fleet's servers (``llmfleet status``): per
    router, whether it answers and is ready, and per expected server, in or out of it
    and healthy or not; servers it has that the inventory does not name are listed too."""
    from .drain import RouterAPI

    workers, _ = router_workers(plans)
    out = []
    for api in admins(plans, http):
        assert isinstance(api, RouterAPI)
        row: dict[str, Any] = {"router": api.name, "url": api.base_url, "error": None}
        try:
            seen = {w.url: w for w in api.workers()}
        except LlmfleetError as exc:
            row.update(ready=False, error=str(exc), workers=[])
            out.append(row)
            continue
        rows = []
        for w in workers:
            got = seen.pop(w.url, None)
            rows.append(
                {
                    "host": w.host,
                    "url": w.url,
                    "in": got is not None and got.status != "draining",
                    "status": got.status if got else "out",
                    "healthy": got.healthy if got else None,
                    "load": got.load if got else None,
                }
            )
        for url, got in seen.items():
            rows.append(
                {
                    "host": None,
                    "url": url,
                    "in": got.status != "draining",
                    "status": got.status,
                    "healthy": got.healthy,
                    "load": got.load,
                }
            )
        row["workers"] = rows
        row["ready"] = any(r["in"] and r["healthy"] for r in rows)
        out.append(row)
    return out
