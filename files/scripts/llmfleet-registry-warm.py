#!/usr/bin/env python3
"""Fill the site registry's cache with images, each blob fetched from upstream once.

Runs on the cache host, against its own pull-through registry (Debian's
docker-registry 2.8).  That registry answers a blob it does not hold by
fetching it from upstream twice, once into its cache and once more for the
client, and once again for every other client asking while the first fetch
runs: two hosts pulling one image cost three copies of it.  So the image is
brought in first, alone: for each blob not yet cached, ask for it and hang up
once the headers arrive (the registry's fetch into its cache goes on; the one
for us stops at once), then wait until the blob is in the registry's storage.
Hosts pulling afterwards are served from the cache.

    llmfleet-registry-warm.py --port 5000 --storage /var/lib/docker-registry REPO@DIGEST...
    llmfleet-registry-warm.py --check ...      # prints "cached" or "missing", fetches nothing

Prints one JSON line per image.  Standard library only: it runs with the host's
python3.
"""

import argparse
import http.client
import json
import os
import platform
import sys
import time

ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
INDEXES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def manifest(port: int, repo: str, ref: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise SystemExit(f"{repo}@{ref}: manifest: HTTP {resp.status} {body[:300]!r}")
    doc = json.loads(body)
    doc.setdefault("mediaType", resp.getheader("Content-Type", ""))
    return doc


def blobs(port: int, repo: str, digest: str, arch: str) -> list[tuple[str, int]]:
    """(digest, size) of the config and layers of the image for this host's arch."""
    doc = manifest(port, repo, digest)
    if doc["mediaType"] in INDEXES:
        mine = [
            m
            for m in doc["manifests"]
            if m.get("platform", {}).get("os") == "linux"
            and m.get("platform", {}).get("architecture") == arch
        ]
        if not mine:
            raise SystemExit(f"{repo}@{digest}: no linux/{arch} image in its index")
        doc = manifest(port, repo, mine[0]["digest"])
    return [(b["digest"], b["size"]) for b in [doc["config"], *doc["layers"]]]


def cached(storage: str, repo: str, digest: str) -> bool:
    algo, hexdigest = digest.split(":", 1)
    link = f"{storage}/docker/registry/v2/repositories/{repo}/_layers/{algo}/{hexdigest}/link"
    return os.path.exists(link)


def uploading(storage: str, repo: str) -> bool:
    """Whether the registry is writing a blob of ``repo`` into its storage now."""
    try:
        return bool(os.listdir(f"{storage}/docker/registry/v2/repositories/{repo}/_uploads"))
    except OSError:
        return False


def start_fetch(port: int, repo: str, digest: str) -> None:
    """Ask for the blob and hang up after the headers: the cache fetches it anyway."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", f"/v2/{repo}/blobs/{digest}")
    resp = conn.getresponse()
    status = resp.status
    resp.close()  # unread: the socket closes, the registry's copy to us stops
    conn.close()
    if status != 200:
        raise SystemExit(f"{repo}: blob {digest}: HTTP {status}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--storage", required=True)
    ap.add_argument("--timeout", type=int, default=7200)
    ap.add_argument("--check", action="store_true", help='print "cached" or "missing" only')
    ap.add_argument("images", nargs="+", metavar="REPO@DIGEST")
    a = ap.parse_args()
    arch = ARCH.get(platform.machine(), platform.machine())
    if a.check:
        held = all(
            cached(a.storage, repo, d)
            for repo, digest in (i.split("@", 1) for i in a.images)
            for d, _ in blobs(a.port, repo, digest, arch)
        )
        print("cached" if held else "missing")
        return 0
    for image in a.images:
        repo, digest = image.split("@", 1)
        started = time.monotonic()
        wanted = blobs(a.port, repo, digest, arch)
        missing = [(d, n) for d, n in wanted if not cached(a.storage, repo, d)]
        for d, _ in missing:
            start_fetch(a.port, repo, d)
        deadline, retries, quiet = started + a.timeout, 0, time.monotonic()
        while left := [d for d, _ in missing if not cached(a.storage, repo, d)]:
            if time.monotonic() > deadline:
                raise SystemExit(f"{image}: {len(left)} blobs not cached after {a.timeout}s")
            if uploading(a.storage, repo):
                quiet = time.monotonic()
            elif time.monotonic() - quiet > 10:  # the cache's fetch failed: ask again
                retries += 1
                if retries > 3:
                    raise SystemExit(f"{image}: the registry did not cache {left} (see its log)")
                for d in left:
                    start_fetch(a.port, repo, d)
                quiet = time.monotonic()
            time.sleep(0.5)
        print(
            json.dumps(
                {
                    "image": image,
                    "blobs": len(wanted),
                    "bytes": sum(n for _, n in wanted),
                    "fetched": len(missing),
                    "fetched_bytes": sum(n for _, n in missing),
                    "seconds": round(time.monotonic() - started, 1),
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
