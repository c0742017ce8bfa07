"""The Shapes wing: a procedural world with exact geometry (`world`), the training of its
diffusion prior (`train_prior`) and judge (`judge`), and the benchmark that scores runs
against the truth (`evaluate`).
"""
