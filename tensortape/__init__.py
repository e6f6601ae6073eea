"""The `tensortape` command line (see `tensortape.cli`)."""
