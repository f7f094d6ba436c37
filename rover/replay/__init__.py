"""Process replay: a recording's inputs through the real node processes, their answers diffed.

`rover replay SESSION` (rover.replay.cli); the lock-step feeder (runner), the node processes
and their sockets (stack), the output session (output), the answers (answers), the diff (diff).
"""
