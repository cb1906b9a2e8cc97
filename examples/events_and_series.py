"""A time series and an event stream computed locally: no model, exact under the seed."""

import agentic_synth

series = agentic_synth.generate_timeseries(
    start="2026-01-01T00:00:00Z",
    end="2026-01-08T00:00:00Z",
    interval="1h",
    metrics=["cpu", {"name": "latency_ms", "base": 120, "scale": 30, "min": 0}],
    trend="up",
    seasonality=True,
    noise=0.1,
    seed=7,
)
events = agentic_synth.generate_events(
    5000,
    event_types={"login": 0.5, "purchase": 0.1, "page_view": 0.4},
    distribution="poisson",
    time_range=("2026-01-01T00:00:00Z", "2026-01-08T00:00:00Z"),
    users=200,
    user_distribution="zipf",
    seed=7,
)
series.write("series.csv")
events.write("events.jsonl")
print(len(series), "points, first:", series.records[0])
print(len(events), "events, first:", events.records[0])
