"""Batching and the failure threshold of rolling deploys (the pyinfra runs are faked)."""

import pytest

from llmfleet.errors import LlmfleetError
from llmfleet.rollout import batches, fail_limit, roll

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

    out = roll(HOSTS, "2", "0", run, say=lambda m: None)
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
