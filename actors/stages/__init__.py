"""The stage actors of the built-in pipelines, and the webhook delivery actor."""
