"""loopwise stream layer: the Faust app, its topics and agents (thin), and the CLI."""
