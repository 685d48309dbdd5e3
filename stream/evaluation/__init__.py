"""`signals eval`: models against golden data (offline), metrics and reports, the regression gate,
and the summary of champion/challenger windows read from a topic (online)."""
