"""The live session of a replay: `session_data`, the streaming coordinator, the fault-injecting
feed, the upkeep and a run's in-memory state and end-of-session results."""
