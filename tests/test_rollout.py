"""Batching and the failure threshold of rolling deploys (the pyinfra runs are faked)."""

import pytest

from llmfleet.errors import LlmfleetError
from llmfleet.rollout import batches, fail_limit, max_fail_of, roll

HOSTS = [f"h{i}" for i in range(1, 8)]


def test_batches_by_count_and_percentage() -> None:
    assert batches(HOSTS, "3") == [["h1", "h2", "h3"], ["h4", "h5", "h6"], ["h7"]]
    assert batches(HOSTS, "25%") == [["h1", "h2"], ["h3", "h4"], ["h5", "h6"], ["h7"]]
    assert batches(HOSTS, "1%") == [[h] for h in HOSTS]  # never an empty batch
    with pytest.raises(LlmfleetError, match="--batch 'x'"):
        batches(HOSTS, "x")


def test_fail_limit() -> None:
    assert fail_limit(7, "0") == 0 and fail_limit(7, "2") == 2 and fail_limit(7, "30%") == 2


def test_rollout_stops_at_the_threshold_and_leaves_the_rest_alone() -> None:
    seen: list[list[str]] = []

    def run(batch: list[str]) -> dict[str, dict]:
        seen.append(batch)
        return {
            h: {"status": "failed" if h == "h3" else "healthy", "detail": "boom"} for h in batch
        }

    said: list[str] = []
    out = roll(HOSTS, "2", "0", run, say=said.append)
    assert said[-1] == "stopping: 1 failed host(s) > allowed 0; not touched: h5, h6, h7"
    assert seen == [["h1", "h2"], ["h3", "h4"]]
    assert out.stopped and out.done == ["h1", "h2", "h4"]
    assert out.failed == {"h3": "failed: boom"}
    assert out.skipped == ["h5", "h6", "h7"]


def test_rollout_tolerates_failures_up_to_max_fail_and_counts_missing_results() -> None:
    out = roll(
        HOSTS,
        "3",
        "1",
        lambda b: {h: {"status": "healthy"} for h in b if h != "h2"},
        say=lambda m: None,
    )
    assert not out.stopped and out.failed == {"h2": "failed: no result"}
    assert len(out.done) == 6


def test_a_batch_of_several_hosts_reaches_every_host_of_it(tmp_path) -> None:
    """pyinfra's --limit takes one pattern each; a comma list matched no host at all."""
    from pathlib import Path

    from llmfleet.rollout import limit_args, pyinfra_runner

    assert limit_args(["a", "b"]) == ["--limit", "a", "--limit", "b"]
    hosts = [f"@fake/h{i}" for i in (1, 2, 3)]
    # a fake host answers every command with success, except the failing one of fail_host
    data = {
        "fake_delay": 0,
        "fake_delay_jitter": 0,
        "fake_responses": {"; exit 1": {"success": False}},
    }
    inventory = tmp_path / "inventory.py"
    inventory.write_text(f"hosts = {[(h, data) for h in hosts]!r}\n")
    run = pyinfra_runner(str(inventory), "deploys/rollback.py", [], Path(__file__).parents[1])
    results = run(hosts[:2])
    # both hosts of the batch ran (no release to go back to: a named failure), h3 did not
    assert set(results) == {"@fake/h1", "@fake/h2"}
    assert all(r["status"] == "failed" for r in results.values())
    assert "no previous release" in results["@fake/h1"]["detail"]


def test_fail_percent_is_max_fail_as_a_share_of_the_fleet() -> None:
    assert max_fail_of("3", None) == "3"
    assert max_fail_of("0", 10) == "10%" and fail_limit(500, max_fail_of("0", 10)) == 50
    assert max_fail_of("0", 2.5) == "2.5%" and fail_limit(40, "2.5%") == 1
    with pytest.raises(LlmfleetError, match="fail-percent"):
        max_fail_of("0", 150)
