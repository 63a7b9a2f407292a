"""The workload of a benchmark: the guide's own parameters, read from its command.

Every recipe with a ``benchmark:`` keeps the command the guide ran and the
figures it printed (``also:`` holds further published points, e.g. the same
server at another concurrency).  This module reads the workload out of that
command (``vllm bench serve`` and SGLang's ``bench_serving`` share the flag
names) into :class:`BenchParams`, which the client turns back into argv.

SGLang's ``--random-range-ratio r`` draws lengths uniformly from
``[r*len, len]``; vLLM's draws from ``[len*(1-r'), len*(1+r')]``.  The same
distribution in vLLM's terms is ``len' = len*(1+r)/2``, ``r' = (1-r)/(1+r)``,
so a guide that ran SGLang's tool gets the same lengths from ours.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import asdict, dataclass, replace
from typing import Any

from .benchmetrics import Metrics, from_guide_results
from .errors import LlmfleetError

# the workload a recipe without a guide benchmark gets only when every part is given
OVERRIDES = ("input_len", "output_len", "num_prompts", "concurrency")


@dataclass(frozen=True)
class BenchParams:
    """One workload, in the client's (vLLM's) terms."""

    input_len: int
    output_len: int
    num_prompts: int
    concurrency: int | None  # None: no cap (the guide paced requests by rate instead)
    request_rate: float = math.inf
    range_ratio: float = 0.0
    backend: str = "openai"
    # what the guide ran, when ours differs from it (another dataset): shown, not hidden
    note: str = ""

    def key(self) -> dict[str, Any]:
        """What makes two runs comparable (the note is prose, not workload)."""
        data = asdict(self)
        data.pop("note")
        data["request_rate"] = "inf" if math.isinf(self.request_rate) else self.request_rate
        return data

    def to_json(self) -> dict[str, Any]:
        return {**self.key(), "note": self.note}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchParams:
        rate = data.get("request_rate", "inf")
        return cls(
            input_len=int(data["input_len"]),
            output_len=int(data["output_len"]),
            num_prompts=int(data["num_prompts"]),
            concurrency=None if data.get("concurrency") is None else int(data["concurrency"]),
            request_rate=math.inf if rate in ("inf", None) else float(rate),
            range_ratio=float(data.get("range_ratio", 0.0)),
            backend=data.get("backend", "openai"),
            note=data.get("note", ""),
        )

    def describe(self) -> str:
        conc = "unbounded" if self.concurrency is None else str(self.concurrency)
        rate = "" if math.isinf(self.request_rate) else f", {self.request_rate:g} req/s"
        return (
            f"in {self.input_len} / out {self.output_len}, {self.num_prompts} prompts, "
            f"concurrency {conc}{rate}"
        )


@dataclass(frozen=True)
class GuidePoint:
    """One published benchmark: the workload, the figures printed, the command run."""

    params: BenchParams
    published: Metrics
    command: str


def _flags(command: str) -> tuple[str, dict[str, str]]:
    """The tool (``vllm`` or ``sglang``) and ``--flag value`` pairs of a guide command."""
    words = shlex.split(command)
    tool = "sglang" if any("sglang" in w for w in words[:3]) else "vllm"
    flags: dict[str, str] = {}
    for i, word in enumerate(words):
        if word.startswith("--"):
            name, eq, value = word.partition("=")
            nxt = words[i + 1] if i + 1 < len(words) else ""
            flags[name] = value if eq else ("" if nxt.startswith("--") else nxt)
    return tool, flags


def params_from_command(command: str, backends: dict[str, str]) -> BenchParams:
    """The workload of a guide's ``vllm bench serve`` / ``sglang.bench_serving`` command."""
    tool, f = _flags(command)
    dataset = f.get("--dataset-name", "random")
    note = ""
    if dataset == "generated-shared-prefix":
        in_len = int(f["--gsp-system-prompt-len"]) + int(f["--gsp-question-len"])
        out_len = int(f["--gsp-output-len"])
        note = "the guide's shared-prefix dataset run as random prompts of the same length"
    else:
        in_len = int(f.get("--random-input-len") or f.get("--input-len") or 1024)
        out_len = int(f.get("--random-output-len") or f.get("--output-len") or 128)
        if dataset != "random":
            note = f"the guide's {dataset} dataset run as random prompts"
    ratio = float(f.get("--random-range-ratio") or 0.0)
    if tool == "sglang" and dataset != "generated-shared-prefix":
        # random lengths uniform on [r*len, len] -> vLLM's centre and half-width
        in_len, out_len = round(in_len * (1 + ratio) / 2), round(out_len * (1 + ratio) / 2)
        ratio = (1 - ratio) / (1 + ratio)
    backend = f.get("--backend", "")
    rate = f.get("--request-rate", "inf")
    conc = f.get("--max-concurrency")
    return BenchParams(
        input_len=in_len,
        output_len=out_len,
        num_prompts=int(f.get("--num-prompts") or 1000),
        concurrency=int(conc) if conc else None,
        request_rate=math.inf if rate in ("inf", "") else float(rate),
        range_ratio=round(ratio, 6),
        backend=backend if backend in backends else "",
        note=note,
    )


def guide_points(benchmark: dict[str, Any] | None, backends: dict[str, str]) -> list[GuidePoint]:
    """Every published point of a recipe's ``benchmark:`` (the main one first)."""
    if not benchmark or not benchmark.get("command"):
        return []
    entries = [benchmark, *(benchmark.get("also") or [])]
    return [
        GuidePoint(
            params_from_command(e["command"], backends),
            from_guide_results(e.get("results") or {}),
            " ".join(e["command"].split()),
        )
        for e in entries
    ]


def choose_params(
    host: str,
    recipe: str,
    points: list[GuidePoint],
    overrides: dict[str, int | None],
    default_backend: str,
) -> BenchParams:
    """The guide's main workload with the operator's overrides; without a guide
    benchmark, the overrides must give the whole workload."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if points:
        base = points[0].params
    else:
        missing = [k for k in OVERRIDES if k not in given]
        if missing:
            flags = " ".join(f"--{k.replace('_', '-')} N" for k in missing)
            raise LlmfleetError(
                f"{host}: recipe {recipe} has no benchmark from its guide "
                f"(fix: give the workload: {flags})"
            )
        base = BenchParams(0, 0, 0, None)
    params = replace(base, **given)
    return replace(params, backend=params.backend or default_backend)


def matching_point(points: list[GuidePoint], params: BenchParams) -> GuidePoint | None:
    """The published point run with exactly this workload (the backend aside), if any."""
    want = {k: v for k, v in params.key().items() if k != "backend"}
    for p in points:
        have = {k: v for k, v in p.params.key().items() if k != "backend"}
        if have == want:
            return p
    return None
