"""Stand-in vendor servers: real HTTP servers on 127.0.0.1 that check what each vendor
checks (auth, required fields, types, limits, hashing format, dedup key) and answer the way
it does, its error bodies included. One module per vendor, each a ``StandIn`` subclass."""
