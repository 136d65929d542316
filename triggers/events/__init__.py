"""Reading platform events and deciding the one run each asks for.

- `triggers.events.policy`: `run_trigger`, the one policy for every event's fate (ack, retry, log).
- `triggers.events.new_data`, `schedule`, `drift`: the run each trigger asks for.
- `triggers.events.partitions`: the landing layout and its date arithmetic.
- `triggers.events.logs`: structured logs Cloud Logging reads.

Standard library only (plus what `triggers.submission` needs): vendored into
each function's deploy folder, and imported on every cold start.
"""
