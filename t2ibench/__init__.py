"""t2ibench: benchmark suite and reference trainers for text-to-image diffusion backbones."""

__version__ = "0.1.0"
