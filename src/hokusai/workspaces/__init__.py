"""Workspaces: one per team, isolated by MLflow's own workspaces, with the platform's
settings (protected aliases, the promotion gate) kept in the auth store."""
