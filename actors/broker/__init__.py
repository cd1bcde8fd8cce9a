"""The Dramatiq broker chosen by configuration, its doorbell, and graceful termination."""
