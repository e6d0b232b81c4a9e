"""One module per `genaccel` subcommand (see `genaccel.cli`)."""
