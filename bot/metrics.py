"""Prometheus metrics, served at `/metrics`. One registry per process (tests build their own)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

JOB_OUTCOMES = ("answered", "failed")
TOKEN_KINDS = ("input", "output", "cache_read", "cache_creation")
FEEDBACK_VALUES = ("up", "down")
SLACK_METHODS = ("chat.postMessage", "chat.update", "chat.stream")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter("archbot_events_received", "Slack events received, by type", ["type"], registry=r)
        self.events_ignored = Counter(
            "archbot_events_ignored", "Events acked but not answered, by reason", ["reason"], registry=r
        )
        self.events_refused = Counter(
            "archbot_events_refused", "Events answered 503 because the database could not take them", registry=r
        )
        self.jobs = Counter("archbot_jobs", "Jobs ended, by outcome", ["outcome"], registry=r)
        self.requests_rejected = Counter(
            "archbot_requests_rejected",
            "HTTP requests to /slack/events refused before parsing: unsigned (401), malformed (400), too_large (413)",
            ["reason"],
            registry=r,
        )
        self.ack_seconds = Histogram(
            "archbot_ack_seconds",
            "Time from the request reaching the web server (or the Socket Mode envelope read) to the ack written",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 3),
            registry=r,
        )
        self.model_seconds = Histogram(
            "archbot_model_seconds",
            "Model call duration",
            buckets=(0.5, 1, 2, 5, 10, 20, 40, 80, 160),
            registry=r,
        )
        self.first_text_seconds = Histogram(
            "archbot_first_text_seconds",
            "Time from job start to first visible text in Slack",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self.tokens = Counter("archbot_tokens", "Model tokens, by kind", ["kind"], registry=r)
        self.slack_errors = Counter("archbot_slack_api_errors", "Slack API errors, by method", ["method"], registry=r)
        self.feedback = Counter("archbot_feedback", "Feedback clicks, by value", ["value"], registry=r)
        self.queue_depth = Gauge("archbot_queue_depth", "Jobs queued or running", registry=r)
        self.model_limit = Gauge(
            "archbot_model_concurrency_limit",
            "Model requests allowed at once now (adapts below ARCHBOT_CONCURRENCY on 429/529)",
            registry=r,
        )
        self.model_in_flight = Gauge("archbot_model_in_flight", "Model requests in flight", registry=r)
        self.model_overloads = Counter(
            "archbot_model_overloaded", "Model requests refused with 429/503/529", registry=r
        )
        self.workers_busy = Gauge("archbot_workers_busy", "Workers running a job", registry=r)
        # Label values that always exist are exported at 0 from the start, so a rate() or an alert
        # on them works from the first scrape instead of appearing with the first event.
        for counter, values in (
            (self.jobs, JOB_OUTCOMES),
            (self.tokens, TOKEN_KINDS),
            (self.feedback, FEEDBACK_VALUES),
            (self.requests_rejected, ("unsigned", "malformed", "too_large")),
            (self.slack_errors, SLACK_METHODS),
            (self.events, ("app_mention", "message")),
            (self.events_ignored, ("duplicate",)),
        ):
            for value in values:
                counter.labels(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)
