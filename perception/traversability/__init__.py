"""LAGR-style traversability: a segmenter learned from stereo self-labels, adapted online.

Modules: `model` (the network, save/load), `data` (stereo-labelled frames), `train` (offline
training, ``rover train traversability``), `online` (the adapting head and its replay buffer),
`polar` (free distance along candidate arcs), `guard` (the control use, numpy only),
`pipeline` (one frame end to end), `closed_loop` (collisions per km with and without the guard).
Importing this package loads no torch; `model`, `data`, `train` and `online` do.
"""
