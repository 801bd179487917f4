"""One module per `t2ibench` subcommand; see t2ibench/cli.py for the convention."""


def load_plugins() -> None:
    """Import the packages above the core that register components: the demo's VQA backend
    ("shapes-measure"). Commands whose inputs may name one call this before parsing those inputs."""
    import t2ibench.demo  # noqa: F401
