"""Image resolution at plan time: what resolving 5 image tags to digests adds to a plan, and the registry
round trips it makes.

A real CNCF Distribution registry on loopback (`tests/integration/distribution.py`: Debian's
`docker-registry`, one instance with htpasswd Basic auth, one with the Bearer token flow against a local
token server, as Harbor uses it). Five images in five repositories, as a plan with a web container, a
worker, a migration init container, a sidecar and an exporter would name them; one is a two-platform OCI
index. Measured, per run (interleaved, in a shuffled order each round, because the machine is shared):

* **concurrent**: `workers.registry.resolve_images` once for the five images, what the plan does per
  registry (one `/v2/` challenge, then one manifest GET per image on 8 threads; Bearer: one token carrying
  every repository's scope);
* **sequential**: `resolve_images` once per image, one after the other (what a loop over images would cost:
  a challenge, and for Bearer a token, per image);
* **bare GET**: one manifest GET with a ready Basic header on a warm connection, the unit of latency;
* **new client**: a default `httpx.Client()` built and closed: it loads the CA bundle into a fresh SSL
  context, a fixed cost whatever the registry's distance, which `resolve_images` no longer pays per call
  (workers.registry shares one TLS context); shown for comparison with the first version's figures.

The test token server signs its RS256 JWTs in pure Python (~50 ms of CPU a token, in this process, under
the GIL); Harbor's token service signs in Go in about a millisecond. So Bearer is measured twice: with the
fixture as it is, and with each (user, scope) token signed once and then answered from memory (refreshed
every minute), which stands for a token service of Harbor's speed. Same requests on the wire either way.

Round trips are counted at the transport (`httpx.HTTPTransport.handle_request`, patched in this script
only), so every request on the wire counts, the token requests included. Floor: one request per image
plus the auth handshake: Basic 1 challenge + 5 = 6; Bearer 1 challenge + 1 token (one token can carry
the five `repository:…:pull` scopes) + 5 = 7. The issue's floor of one HEAD per image is 5; plate-bot GETs
the manifest instead, to hash it (the digest is computed, not taken from a header) and to read an index's
platforms.

Every Bearer token is registered with the redaction layer as it arrives (`core.redact.REDACTOR.add`),
which rebuilds the one regex of every secret value the process knows. A job starts from a fresh fork, so
before each run the tokens of the previous runs are dropped again (outside the timing): each run is a plan
in a new job. `--secrets N` first registers the values of N Secret keys, as a worker that has listed the
environment's Secrets holds them, to show what the rebuilds cost then.

Loopback answers in well under a millisecond, unlike a registry across a network: `--rtt MS` adds that
many milliseconds before every request (a sleep in the patched transport, which releases the GIL as a
network wait would), to show what the concurrency buys at a realistic distance.

    .venv/bin/python bench/image_resolve.py               # 30 runs, rtt 0 and 20 ms
    .venv/bin/python bench/image_resolve.py --quick       # 5 runs
    .venv/bin/python bench/image_resolve.py --runs 100 --rtt 0 --rtt 50
    .venv/bin/python bench/image_resolve.py --rtt 0 --secrets 300
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import ROOT, header, ms, percentile

sys.path.insert(0, str(ROOT))

import httpx

from core.redact import REDACTOR
from tests.integration import distribution
from tests.integration.chart_sources import push_image_variant, push_index
from workers.images import Image, Outcome, parse
from workers.registry import MANIFEST_ACCEPT, resolve_images

REPOS = ("plate/plate-web", "plate/plate-worker", "plate/migrate", "plate/nginx-sidecar", "plate/exporter")
TAG = "1.5.0"
MODES = ("concurrent", "sequential", "bare GET", "new client")
AUTHS = {
    "basic": "Basic",
    "token": "Bearer (fixture's pure-Python signing)",
    "token-fast": "Bearer (tokens pre-signed)",
}


class Wire:
    """Counts the requests httpx puts on the wire (by method and path kind), optionally after a delay."""

    def __init__(self) -> None:
        self.rtt = 0.0
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._original = httpx.HTTPTransport.handle_request

    @contextlib.contextmanager
    def installed(self) -> Iterator[Wire]:
        wire, original = self, self._original

        def handle_request(transport: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
            path = request.url.path
            kind = "token" if path.endswith("/token") else "challenge" if path == "/v2/" else "manifest"
            with wire._lock:
                wire.counts[f"{request.method} {kind}"] += 1
            if wire.rtt:
                time.sleep(wire.rtt)
            return original(transport, request)

        httpx.HTTPTransport.handle_request = handle_request  # type: ignore[method-assign]
        try:
            yield self
        finally:
            httpx.HTTPTransport.handle_request = original  # type: ignore[method-assign]

    def take(self) -> Counter[str]:
        with self._lock:
            counts, self.counts = self.counts, Counter()
        return counts


def push_five(regs: distribution.Registries) -> None:
    for i, repo in enumerate(REPOS):
        if i == len(REPOS) - 1:
            push_index(regs.basic.url, distribution.ADMIN, repo, TAG)
        else:
            push_image_variant(regs.basic.url, distribution.ADMIN, repo, TAG, f"{repo}-{TAG}")


def images(reg: distribution.Registry) -> list[Image]:
    return [parse(f"{reg.host}/{repo}:{TAG}") for repo in REPOS]


def concurrent(reg: distribution.Registry) -> None:
    results = resolve_images(reg.url, images(reg), *distribution.PULLER)
    assert all(r.outcome is Outcome.RESOLVED for r in results), results


def sequential(reg: distribution.Registry) -> None:
    for image in images(reg):
        [result] = resolve_images(reg.url, [image], *distribution.PULLER)
        assert result.outcome is Outcome.RESOLVED, result


def bare_get(http: httpx.Client, reg: distribution.Registry) -> Callable[[], None]:
    url = f"{reg.url}/v2/{REPOS[0]}/manifests/{TAG}"

    def run() -> None:
        answer = http.get(url, headers={"Accept": MANIFEST_ACCEPT})
        assert answer.status_code == 200, answer.status_code

    return run


FLOOR = {"basic": 6, "token": 7, "token-fast": 7}


class Tokens:
    """The token server's answers timed, and (when `fast`) memoized per (user, scope) for a minute."""

    def __init__(self, server: distribution.TokenServer) -> None:
        self.fast = False
        self.served: list[float] = []
        self._cache: dict[tuple[str, str], tuple[float, tuple[int, dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        original = server.answer

        def answer(path: str, authorization: str) -> tuple[int, dict[str, Any]]:
            start = time.perf_counter()
            key = (path.split("scope=", 1)[-1], authorization)
            with self._lock:
                hit = self._cache.get(key) if self.fast else None
            if hit is not None and time.monotonic() - hit[0] < 60:
                result = hit[1]
            else:
                result = original(path, authorization)
                with self._lock:
                    self._cache[key] = (time.monotonic(), result)
            with self._lock:
                self.served.append(time.perf_counter() - start)
            return result

        server.answer = answer  # type: ignore[method-assign]

    def take(self) -> list[float]:
        with self._lock:
            served, self.served = self.served, []
        return served


def fresh_job() -> None:
    """Forget the tokens earlier runs registered (a job is a fresh fork); keep the Secrets' values."""
    for source in REDACTOR.sources():
        if isinstance(source, tuple) and source[:1] == ("added",):
            REDACTOR.remove(source)


def learn_secrets(count: int) -> None:
    rng = random.Random(3)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    for i in range(count):
        REDACTOR.set(("secret", "bench", "plate-prod", f"s{i}"), ["".join(rng.choices(alphabet, k=24))])


def new_client() -> None:
    httpx.Client(timeout=10).close()


def measure(regs: distribution.Registries, wire: Wire, tokens: Tokens, runs: int, rtt: float) -> dict[str, Any]:
    wire.rtt = rtt
    times: dict[tuple[str, str], list[float]] = {}
    trips: dict[tuple[str, str], Counter[str]] = {}
    served: dict[str, list[float]] = {"token": [], "token-fast": []}
    with httpx.Client(auth=distribution.PULLER, timeout=10) as http:
        bare = bare_get(http, regs.basic)
        bare()  # warm: a keep-alive connection, as the plan's client has after its challenge
        jobs: dict[tuple[str, str], Callable[[], None]] = {
            ("bare GET", "basic"): bare,
            ("new client", "basic"): new_client,
        }
        for which in AUTHS:
            reg = regs.token if which.startswith("token") else regs.basic
            jobs[("concurrent", which)] = functools.partial(concurrent, reg)
            jobs[("sequential", which)] = functools.partial(sequential, reg)
        for key, job in jobs.items():  # warm-up, not counted
            tokens.fast = key[1] == "token-fast"
            job()
        wire.take(), tokens.take()
        rng = random.Random(17)
        for _ in range(runs):
            order = list(jobs)
            rng.shuffle(order)
            for key in order:
                tokens.fast = key[1] == "token-fast"
                fresh_job()
                start = time.perf_counter()
                jobs[key]()
                times.setdefault(key, []).append(time.perf_counter() - start)
                counted = wire.take()
                trips[key] = trips.get(key) or counted  # the same every run; asserted below
                assert counted == trips[key], (key, counted, trips[key])
                if key[1] in served:
                    served[key[1]] += tokens.take()
    return {"times": times, "trips": trips, "served": served}


def report(result: dict[str, Any], rtt: float, runs: int) -> None:
    times, trips, served = result["times"], result["trips"], result["served"]
    print(f"## added latency per request: {rtt * 1000:.0f} ms  ({runs} interleaved runs)")
    print()
    print("| auth | mode | round trips | of which | floor | median | p95 |")
    print("|---|---|---|---|---|---|---|")
    for which, label in AUTHS.items():
        for mode in MODES:
            key = (mode, which)
            if key not in times:
                continue
            counted = trips[key]
            detail = ", ".join(f"{n} {k}" for k, n in sorted(counted.items())) or "none"
            floor = {"bare GET": "1", "new client": "0"}.get(mode, str(FLOOR[which]))
            print(
                f"| {label} | {mode} | {sum(counted.values())} | {detail} | {floor} | "
                f"{ms(statistics.median(times[key]))} | {ms(percentile(times[key], 95))} |"
            )
    print()
    unit = statistics.median(times[("bare GET", "basic")])
    client = statistics.median(times[("new client", "basic")])
    for which, label in AUTHS.items():
        con = statistics.median(times[("concurrent", which)])
        seq = statistics.median(times[("sequential", which)])
        print(
            f"{label}: concurrent {ms(con)} ({con / unit:.1f}× one bare GET; "
            f"a fresh TLS context would add {ms(client)}); "
            f"sequential {ms(seq)}: concurrency gain {seq / con:.1f}×"
        )
    for which, values in served.items():
        if values:
            print(f"token server, {AUTHS[which]}: median {ms(statistics.median(values))} per token answered")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 runs")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--rtt", type=float, action="append", help="ms added before every request (repeatable)")
    parser.add_argument("--secrets", type=int, default=0, help="Secret keys whose values the redaction layer holds")
    args = parser.parse_args()
    runs = 5 if args.quick else args.runs
    rtts = args.rtt if args.rtt is not None else [0.0, 20.0]
    header("Image tags resolved to digests: 5 images, one registry", sys.argv)
    if distribution.binary() is None:
        sys.exit("docker-registry (CNCF Distribution) is not installed: apt-get install docker-registry")
    wire = Wire()
    with (
        tempfile.TemporaryDirectory(prefix="plate-bench-registry-") as tmp,
        distribution.registries(Path(tmp)) as regs,
    ):
        push_five(regs)
        tokens = Tokens(regs.token_server)
        learn_secrets(args.secrets)
        print(f"redaction layer: {len(REDACTOR.known)} values of {args.secrets} Secret keys, tokens dropped per run")
        print(f"registry: {distribution.BINARY} on loopback, Basic at {regs.basic.url}, Bearer at {regs.token.url}")
        print(f"images: {', '.join(f'{r}:{TAG}' for r in REPOS)} (the last a two-platform OCI index)")
        print()
        with wire.installed():
            for rtt in rtts:
                report(measure(regs, wire, tokens, runs, rtt / 1000), rtt / 1000, runs)


if __name__ == "__main__":
    main()
