"""The Shapes wing: a procedural world with exact geometry (`world`), the training of its diffusion prior
(`train_prior`: the run; `prior_config` its model configs, `prior_data` its renders and pool, `prior_step` its
train step, `prior_card` its model card and export) and of its judge (`judge`), the skeleton those two trainers
share (`trainer`), and the benchmark that scores runs against the truth (`evaluate`).
"""
