"""Recordings: the recorder's MCAP format, the writer, the reading API and the tools.

The reading API (what training uses) is re-exported here: `open_sessions`, `iter_samples`,
`Session`, `Sample`, `decode_jpeg`.
"""

from rover.recording.reader import Sample, Session, decode_jpeg, iter_samples, open_sessions

__all__ = ["Sample", "Session", "decode_jpeg", "iter_samples", "open_sessions"]
