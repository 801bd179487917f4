"""Small, isolated compatibility fixes for the scorer libraries on current stacks.

Each fix checks whether it is needed and does nothing otherwise (for example on a CUDA machine
whose torchvision loads its compiled ops). `python -m t2ibench.compat install` registers the
start-up hook that the torchvision fix needs; see torchvision_ops.py.
"""
