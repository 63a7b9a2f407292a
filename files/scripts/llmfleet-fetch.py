#!/usr/bin/env python3
"""Pull one pinned model snapshot into the shared Hugging Face cache on this host.

Runs on the host with the engine environment's Python (huggingface_hub is an
engine dependency).  The token never appears in argv: huggingface_hub reads
it from HF_TOKEN_PATH, a 0600 file the role writes.  A marker file is written
only after the whole snapshot is present, so an interrupted pull is resumed,
never mistaken for a finished one.
"""

import argparse
import json
import os
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--repo", required=True)
    p.add_argument("--revision", required=True, help="a commit hash, resolved on the control node")
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--marker", required=True)
    p.add_argument("--workers", type=int, default=8)
    a = p.parse_args()
    from huggingface_hub import snapshot_download

    start = time.time()
    try:
        path = snapshot_download(
            repo_id=a.repo, revision=a.revision, cache_dir=a.cache_dir, max_workers=a.workers
        )
    except Exception as exc:  # the message is what the operator needs; keep it whole
        endpoint = os.environ.get("HF_ENDPOINT", "the Hugging Face Hub")
        print(
            f"llmfleet-fetch: {a.repo}@{a.revision} from {endpoint}: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    tmp = a.marker + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(
            {
                "repo": a.repo,
                "revision": a.revision,
                "path": path,
                "bytes": size,
                "seconds": round(time.time() - start, 1),
            },
            fh,
        )
    os.replace(tmp, a.marker)
    print(json.dumps({"path": path, "bytes": size}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
