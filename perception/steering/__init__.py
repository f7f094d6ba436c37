"""The steering CNN: model, in-process demonstrations, closed-loop evaluation.

The model (`perception.steering.model`) takes both eyes of a stereo pair as RGB uint8 and does
its own cropping, downsampling, colour conversion and normalisation, so training and inference
cannot disagree. Datasets live in `perception.dataset`, training in
`perception.train_steering`, inference in `perception.infer`, export in `perception.export`.
"""
