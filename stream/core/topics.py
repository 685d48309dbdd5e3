"""The one registry of topics: every topic the pipeline reads or writes, with its contract.

Each `TopicSpec` says what a topic is called, what its records are keyed by, which schema in
``schemas/`` its values follow, and — for outputs that `signals replay` rewrites — the stem of
its versioned replay topic. `Topics` is the same list as names (with `SIGNALS_TOPIC_PREFIX`), for
typed access (``settings.topics.signals``). A new output topic is one `TopicSpec` here, one
field of `Topics`, its schema file, and the code that produces it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TopicSpec:
    role: str                        # the field of `Topics` that holds its (prefixed) name
    name: str                        # the topic's name without the prefix
    key: str                         # what the record key is
    schema: str                      # the JSON Schema of its values, under schemas/
    replay_stem: str | None = None   # replay writes `<prefix><stem><models tag>` instead
    compacted: bool = False          # cleanup.policy=compact: the latest value per key is kept


REGISTRY: tuple[TopicSpec, ...] = (
    TopicSpec("events", "content.events.v1", "content_id", "content.events.v1.json"),
    TopicSpec("signals", "content.signals.v1", "content_id", "content.signals.v1.json",
              replay_stem="content.signals.replay."),
    TopicSpec("enriched", "content.enriched.v1", "aggregation group",
              "content.enriched.v1.json"),
    TopicSpec("windows", "signals.windows.v1", "aggregation group", "signals.windows.v1.json",
              replay_stem="signals.windows.replay."),
    TopicSpec("dlq", "content.events.dlq.v1", "the original key, else <topic>-<partition>",
              "content.events.dlq.v1.json", replay_stem="content.events.dlq.replay."),
    TopicSpec("shadow", "content.shadow.v1", "task", "content.shadow.v1.json"),
    TopicSpec("model_eval", "signals.model_eval.v1", "task", "signals.model_eval.v1.json"),
    TopicSpec("late", "signals.late.v1", "aggregation group", "signals.late.v1.json"),
    TopicSpec("embeddings", "content.embeddings.v1", "content_id", "content.embeddings.v1.json",
              compacted=True),
    TopicSpec("similar", "content.similar.v1", "content_id", "content.similar.v1.json"),
    TopicSpec("clusters", "content.clusters.v1", "aggregation group (content_type=<type>)",
              "content.clusters.v1.json"),
    TopicSpec("campaigns", "signals.campaigns.v1", "aggregation group (content_type=<type>)",
              "signals.campaigns.v1.json"),
)
BY_ROLE = {spec.role: spec for spec in REGISTRY}


@dataclass(frozen=True, slots=True)
class Topics:
    """Names of every topic the pipeline reads or writes (prefixed), in registry order."""

    events: str = BY_ROLE["events"].name
    signals: str = BY_ROLE["signals"].name
    enriched: str = BY_ROLE["enriched"].name
    windows: str = BY_ROLE["windows"].name
    dlq: str = BY_ROLE["dlq"].name
    shadow: str = BY_ROLE["shadow"].name
    model_eval: str = BY_ROLE["model_eval"].name
    late: str = BY_ROLE["late"].name
    embeddings: str = BY_ROLE["embeddings"].name
    similar: str = BY_ROLE["similar"].name
    clusters: str = BY_ROLE["clusters"].name
    campaigns: str = BY_ROLE["campaigns"].name

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        return cls(**{spec.role: prefix + spec.name for spec in REGISTRY})

    def all(self) -> tuple[str, ...]:
        return tuple(getattr(self, spec.role) for spec in REGISTRY)


def compacted_roles() -> tuple[str, ...]:
    """Topics created with ``cleanup.policy=compact`` (the latest value per key; null deletes)."""
    return tuple(spec.role for spec in REGISTRY if spec.compacted)


def replayed_roles() -> tuple[str, ...]:
    """The outputs `signals replay` rewrites to versioned topics (signals, windows, dlq)."""
    return tuple(spec.role for spec in REGISTRY if spec.replay_stem is not None)
