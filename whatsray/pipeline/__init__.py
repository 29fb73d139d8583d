"""The pieces of a turn wired together, still free of Ray.

`session/` decides when a turn runs, `agents/` what it says, `store/` and `outbox/` make it durable
and send it. This package is the glue a SessionHost runs: the session hooks built over those
components (`hooks.py`), the turn itself (`turn_runner.py`), its commit (`committer.py`) and the
loop that feeds one inbox partition to a session registry (`consumer.py`). Each takes its
collaborators through small protocols (`ports.py`), so the same code runs with local objects in
tests and with Ray actor handles in `actors/`.
"""
