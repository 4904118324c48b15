"""A child process: its command line, launch, readiness, output, states and stop."""
