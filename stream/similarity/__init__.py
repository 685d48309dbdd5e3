"""Similar content and near-duplicates over the encoder's embeddings.

`index` the contract (`VectorIndex`, `ItemInfo`, `Filter`, `Hit`); `exact` the brute-force
reference; `ann` the embedded default (usearch HNSW, f16); `pgvector` PostgreSQL + pgvector behind
the same contract; `kinds` the registry that picks one from ``SIGNALS_SIMILARITY_INDEX``;
`signals` the pure signal functions (`near_duplicate`, `related`, the cluster rule `cluster_of`,
`index_batch`); `records` the typed records of content.similar.v1 and content.clusters.v1;
`campaigns` the cluster records and the campaign windows' `Folder`;
`calibration` the labelled near-duplicate pairs and the threshold they justify; `rebuild` the
index (and its clusters) from the compacted ``content.embeddings.v1``.
"""
