"""Read the serving commands out of the vendor guides in ``shared/seeds``.

The tests compare every command found here with what the catalog renders,
so a command added to a guide without a recipe fails the suite.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

SEEDS = Path(os.environ.get("LLMFLEET_SEEDS", Path(__file__).parent / "fixtures" / "seeds"))

START = re.compile(
    r"^((?:[A-Z_]+=\S+\s+)*)(vllm serve|python3? -m sglang\.launch_server|docker run)\b"
)
DOCKER_VALUE_OPTS = {
    "-p",
    "-e",
    "-v",
    "--gpus",
    "--group-add",
    "--security-opt",
    "--device",
    "--name",
}
DEPLOYMENT_FLAGS = {"--model", "--model-path", "--host", "--port", "--served-model-name"}
PLACEHOLDER_FLAGS = {"--master-addr", "--dist-init-addr"}


@dataclass
class SeedCommand:
    seed: str
    line: int
    tokens: list[str]
    env: dict[str, str] = field(default_factory=dict)
    sysctl: dict[str, str] = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    governor: str | None = None

    @property
    def key(self) -> str:
        return f"{self.seed[:3]}:{self.line}"


def _context(lines: list[str], cmd: SeedCommand) -> None:
    """Shell set-up written before a command in the same block (Ascend guide)."""
    for line in lines:
        if m := re.match(r"export (\w+)=(.*)$", line):
            cmd.env[m.group(1)] = m.group(2)
        elif m := re.match(r"sysctl -w ([\w.]+)=(\S+)", line):
            cmd.sysctl[m.group(1)] = m.group(2)
        elif m := re.match(r"unset (\w+)", line):
            cmd.unset.append(m.group(1))
        elif m := re.match(r"source (\S+set_env\.sh)", line):
            cmd.sources.append(m.group(1))
        elif m := re.match(
            r"echo (\w+) \| tee /sys/devices/system/cpu/cpu\*/cpufreq/scaling_governor", line
        ):
            cmd.governor = m.group(1)


def commands(seed_dir: Path = SEEDS) -> list[SeedCommand]:
    found: list[SeedCommand] = []
    for path in sorted(seed_dir.glob("*.txt")):
        lines = path.read_text().splitlines()
        block_start = 0
        i = 0
        while i < len(lines):
            line = lines[i].strip()
            if line in ("Command", "Model Deployment") or line.startswith("#"):
                block_start = i
            m = START.match(line)
            if not m:
                i += 1
                continue
            parts, start = [], i
            while True:
                text = lines[i].strip()
                parts.append(text.rstrip("\\").rstrip())
                if not text.endswith("\\") or i + 1 >= len(lines):
                    break
                i += 1
            text = " ".join(parts).replace(" \\ ", " ")
            cmd = SeedCommand(path.name, start + 1, [])
            for assign in shlex.split(m.group(1)):
                k, _, v = assign.partition("=")
                cmd.env[k] = v
            cmd.tokens = shlex.split(text[len(m.group(1)) :])
            _context(lines[block_start:start], cmd)
            found.append(cmd)
            block_start = i + 1
            i += 1
    return found


def split_docker(tokens: list[str]) -> tuple[list[str], str, list[str]]:
    """``docker run OPTS IMAGE CMD`` -> (OPTS, IMAGE, CMD)."""
    assert tokens[:2] == ["docker", "run"]
    i, opts = 2, []
    while tokens[i].startswith("-"):
        opts.append(tokens[i])
        if tokens[i] in DOCKER_VALUE_OPTS:
            opts.append(tokens[i + 1])
            i += 1
        i += 1
    return opts, tokens[i], tokens[i + 1 :]


def normalise(argv: list[str], launcher_len: int) -> tuple[list[str], list[tuple[str, tuple]]]:
    """(launcher, sorted flags) with deployment-chosen values left out."""
    launcher, rest = argv[:launcher_len], argv[launcher_len:]
    flags: list[tuple[str, tuple]] = []
    for tok in rest:
        if re.match(r"^--?[A-Za-z]", tok):
            name, eq, value = tok.partition("=")
            flags.append((name, (value,) if eq else ()))
        elif flags:
            flags[-1] = (flags[-1][0], flags[-1][1] + (tok,))
        # a leading positional is the model: chosen by the deployment
    kept = []
    for name, values in flags:
        if name in DEPLOYMENT_FLAGS:
            continue
        kept.append((name, ("*",) if name in PLACEHOLDER_FLAGS else values))
    return launcher, sorted(kept)
