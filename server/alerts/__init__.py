"""Alerts: settings, rules (threshold and anomaly), notification, webhooks, channels."""
