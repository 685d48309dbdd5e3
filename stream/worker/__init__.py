"""The thin Faust shell: the app and its agents, the sinks that serialise, the logs and
`run_worker`."""
