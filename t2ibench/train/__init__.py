"""The reference trainer: recipe dataclasses (config), the accelerate loop, data pipeline, checkpoints
(state). The curation tools are in `t2ibench.data`."""
