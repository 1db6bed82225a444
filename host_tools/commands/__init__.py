"""The `sensorpub` subcommands: one module per command, each an `argparse_<name>(sub)` factory and a
thin `do_<name>(args)` handler over the library (cli.py holds the table)."""
