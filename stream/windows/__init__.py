"""Event-time windows: one class per window kind and the aggregator that folds and closes them."""
