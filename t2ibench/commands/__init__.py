"""One module per `t2ibench` subcommand; see t2ibench/cli.py for the convention."""
