"""What the web calls: jobs, files, users, webhooks, statistics, event streams, metrics, the clock."""
