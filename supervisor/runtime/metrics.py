"""What ``/metrics`` shows, in Prometheus' text format (``prometheus-client``).

Owns the service's counters and histograms and where their figures come from: the pool's
events (loads and their seconds, unloads and evictions by reason, crashes), each answered
request (by model, route and status), llama-server's timings (tokens in and out, tokens/s),
and, read from the pool only when scraped, the gauges (in flight, queued, children, memory
per model). Labels stay bounded: ``model`` is always a configured name, never a request's
word, and ``route`` a route's path template. It decides nothing and serves no HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from corral.supervisor.runtime.effects import PoolView
from corral.supervisor.runtime.events import Event

#: Load seconds: a 270M model loads in ~0.3 s here; a 32B one from a cold disk in minutes.
LOAD_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The service's figures, in a registry of their own (tests run several services)."""

    def __init__(self, pool: PoolView) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.loads = Counter("corral_loads", "Loads that ended ready.", ["model"], registry=r)
        self.load_seconds = Histogram(
            "corral_load_seconds",
            "Seconds from a load's start to a ready child.",
            ["model"],
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self.load_failures = Counter(
            "corral_load_failures", "Loads that ended without a ready child.", ["model"], registry=r
        )
        self.unloads = Counter(
            "corral_unloads",
            "Children stopped, by reason (swap and out of memory are evictions).",
            ["model", "reason"],
            registry=r,
        )
        self.crashes = Counter(
            "corral_crashes", "Ready children that exited on their own.", ["model"], registry=r
        )
        self.requests = Counter(
            "corral_requests",
            "Requests that reached a model, by model, route and status.",
            ["model", "route", "status"],
            registry=r,
        )
        self.tokens_in = Counter(
            "corral_prompt_tokens",
            "Prompt tokens evaluated (llama-server's timings).",
            ["model"],
            registry=r,
        )
        self.tokens_out = Counter(
            "corral_predicted_tokens",
            "Tokens generated (llama-server's timings).",
            ["model"],
            registry=r,
        )
        self.tokens_per_second = Gauge(
            "corral_tokens_per_second",
            "Generation speed of the last answer.",
            ["model"],
            registry=r,
        )
        r.register(_PoolGauges(pool))

    def on_event(self, event: Event) -> None:
        kind, model = event["kind"], event["model"]
        if kind == "ready":
            self.loads.labels(model).inc()
            self.load_seconds.labels(model).observe(event["seconds"])
        elif kind == "load_failed":
            self.load_failures.labels(model).inc()
        elif kind == "unloaded":
            self.unloads.labels(model, event["reason"]).inc()
        elif kind == "crashed":
            self.crashes.labels(model).inc()

    def answered(self, model: str, route: str, status: int) -> None:
        self.requests.labels(model, route, str(status)).inc()

    def timed(self, model: str, prompt: int, predicted: int, per_second: float) -> None:
        self.tokens_in.labels(model).inc(prompt)
        self.tokens_out.labels(model).inc(predicted)
        self.tokens_per_second.labels(model).set(per_second)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _PoolGauges(Collector):
    """Gauges read from the pool when scraped: nothing to keep up to date per request."""

    def __init__(self, pool: PoolView) -> None:
        self._pool = pool

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The names alone: registering must not read the pool (or any GGUF header)."""
        yield from _families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pool = self._pool
        in_flight, queued, loaded, memory, children = _families()
        for entry in pool.entries.values():
            in_flight.add_metric([entry.name], entry.in_flight)
            queued.add_metric([entry.name], entry.waiting)
            loaded.add_metric([entry.name, entry.state.public], 1)
            # Only a running model's: reading an idle one's header would load numpy (gguf).
            found = pool.footprints.of(entry.config) if entry.running() else None
            if found is not None:
                memory.add_metric([entry.name], found.total)
        live = {
            id(e.child) for e in pool.every_entry() if e.child is not None and e.child.state.live
        }
        children.add_metric([], len(live))
        yield from (in_flight, queued, loaded, memory, children)


def _families() -> tuple[GaugeMetricFamily, ...]:
    in_flight = GaugeMetricFamily("corral_in_flight", "Requests being answered.", labels=["model"])
    queued = GaugeMetricFamily("corral_queued", "Requests waiting for a model.", labels=["model"])
    loaded = GaugeMetricFamily(
        "corral_model_state", "1 for the model's current state.", labels=["model", "state"]
    )
    memory = GaugeMetricFamily(
        "corral_model_memory_bytes",
        "Memory a loaded model holds (or is expected to).",
        labels=["model"],
    )
    children = GaugeMetricFamily("corral_children", "Child processes alive.", labels=[])
    return in_flight, queued, loaded, memory, children
