"""The downstream task, owned by the core: particle instance segmentation.

The network predicts three classes per pixel (background, particle interior, particle
boundary); seeded watershed turns them into instances, so touching particles separate.
"""
