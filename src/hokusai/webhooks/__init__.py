"""Durable, signed webhooks on registry events."""
